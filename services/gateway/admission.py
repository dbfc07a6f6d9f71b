"""Admission control: per-tenant quotas and per-queue caps, checked before a job is stored.

Over any of them Submit answers RESOURCE_EXHAUSTED with a retry delay: overload becomes
back-pressure on clients, never a queue that grows until something runs out of memory.

* jobs in flight per tenant: the tenant's in-flight set of the job store;
* jobs per minute per tenant: a fixed one-minute window counter in Redis (one Lua call,
  so concurrent gateways share it and never over-count a refused submission);
* queue depth per priority: the Celery queue's length in Redis.

It also estimates where a new job stands: its queue position and an ETA from the
workers' reported speed (services.common.readiness).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from services.common import readiness
from services.common.jobs import Priority
from services.common.metrics import QueueDepthCollector
from services.common.store import JobStore
from services.gateway.errors import Overloaded

DEFAULT_STEP_SECONDS = 0.05  # before any worker has reported its speed
WINDOW_SECONDS = 60

# KEYS[1] the window counter; ARGV: limit, window seconds. Returns {admitted, ttl ms}.
_RATE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return {0, redis.call('PTTL', KEYS[1])} end
redis.call('INCR', KEYS[1])
if used == 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {1, 0}
"""


@dataclass(frozen=True)
class Quotas:
    tenant_max_jobs_in_flight: int
    tenant_jobs_per_minute: int
    max_queue_depth: dict[str, int]

    @classmethod
    def from_settings(cls, s) -> Quotas:
        return cls(
            s.tenant_max_jobs_in_flight,
            s.tenant_jobs_per_minute,
            {Priority.INTERACTIVE: s.max_queue_depth_interactive, Priority.BATCH: s.max_queue_depth_batch},
        )


@dataclass(frozen=True)
class Placement:
    position: int  # jobs ahead of it
    eta_seconds: float  # until it finishes


class Admission:
    def __init__(
        self,
        client: redis.Redis,
        store: JobStore,
        quotas: Quotas,
        key_prefix: str,
        clock: Callable[[], float] = time.time,
        workers: Callable[[], list[readiness.WorkerStatus]] | None = None,
    ):
        self.client, self.store, self.quotas, self.prefix, self.clock = client, store, quotas, key_prefix, clock
        # The live workers (default: read from Redis each time; the server passes a snapshot).
        self.workers = workers or (lambda: readiness.workers(client, key_prefix))
        self.queues = QueueDepthCollector(client, Priority.ALL)
        self._rate = client.register_script(_RATE)

    def _speed(self) -> tuple[int, float]:
        """(job slots across live workers, seconds per sampler step of one image)."""
        workers = self.workers()
        slots = sum(max(1, w.concurrency) for w in workers) or 1
        measured = [w.step_seconds for w in workers if w.step_seconds > 0]
        return slots, (sum(measured) / len(measured) if measured else DEFAULT_STEP_SECONDS)

    def depth(self, queue: str) -> int:
        return self.queues.depth(queue)

    def admit(self, tenant: str, queue: str, job_steps: int) -> Placement:
        """Check every quota (Overloaded if one is exceeded); where the job will stand."""
        slots, step_seconds = self._speed()
        job_seconds = max(job_steps, 1) * step_seconds
        in_flight = self.store.count_in_flight(tenant)
        if in_flight >= self.quotas.tenant_max_jobs_in_flight:
            raise Overloaded(
                f"tenant has {in_flight} jobs queued or running, the limit is "
                f"{self.quotas.tenant_max_jobs_in_flight}",
                retry_after=max(1.0, job_seconds),
                reason="tenant_in_flight",
            )
        depth = self.depth(queue)
        cap = self.quotas.max_queue_depth[queue]
        if depth >= cap:
            raise Overloaded(
                f"the {queue} queue holds {depth} jobs, its limit is {cap}",
                retry_after=min(60.0, max(1.0, depth / slots * job_seconds)),
                reason="queue_full",
            )
        self._count_submission(tenant)
        ahead = depth + (self.depth(Priority.INTERACTIVE) if queue == Priority.BATCH else 0)
        # Each job ahead occupies one slot for about one job time; ours runs after them.
        eta = (math.floor(ahead / slots) + 1) * job_seconds
        return Placement(position=ahead, eta_seconds=eta)

    def _count_submission(self, tenant: str) -> None:
        limit = self.quotas.tenant_jobs_per_minute
        window = int(self.clock() // WINDOW_SECONDS)
        key = f"{self.prefix}tenant:{tenant}:rate:{window}"
        admitted, ttl_ms = self._rate(keys=[key], args=[limit, WINDOW_SECONDS * 2])
        if not admitted:
            left = WINDOW_SECONDS - self.clock() % WINDOW_SECONDS
            raise Overloaded(
                f"tenant submitted {limit} jobs this minute, the limit is {limit} a minute",
                retry_after=max(0.5, left),
                reason="tenant_rate",
            )
