"""Admission control: per-tenant quotas and per-queue caps, taken in the step that stores the job.

Over any of them Submit answers RESOURCE_EXHAUSTED with a retry delay: overload becomes
back-pressure on clients, never a queue that grows until something runs out of memory.

* jobs in flight per tenant: the tenant's in-flight set of the job store;
* jobs waiting per queue: the jobs admitted to the queue that no attempt has begun (or
  Celery's list of the queue when it holds more, e.g. jobs the broker redelivered);
* jobs per minute per tenant: a counter per one-minute window, which only an admitted job
  increments.

All three are checked and taken by the job store's create script (:meth:`JobStore.admit`),
in one Redis step with the job's record: concurrent Submits on any number of gateways can
never overshoot a limit, and a refused Submit writes and counts nothing. The job gives its
queue slot back when an attempt begins it and its in-flight slot when it reaches a final
state, each exactly once (docs/ARCHITECTURE.md).

It also estimates where a new job stands: its queue position and an ETA from its cost
(NFE x rows at its size) and the per-row times the workers measured (services.common.cost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.common import cost, readiness
from services.common.jobs import JobSpec, Priority
from services.common.store import Admitted, JobStore, Quota, QuotaExceeded
from services.gateway.errors import Overloaded

WINDOW_SECONDS = 60


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


class Admission:
    def __init__(
        self,
        store: JobStore,
        quotas: Quotas,
        workers: Callable[[], list[readiness.WorkerStatus]] | None = None,
    ):
        self.store, self.quotas = store, quotas
        # The live workers (default: read from Redis each time; the server passes a snapshot).
        self.workers = workers or (lambda: readiness.workers(store.client, store.prefix))

    def admit(self, tenant: str, spec: JobSpec, job_steps: int, now: float, webhooks: str = "", *,
              job_id: str | None = None, broker_message: tuple[str, str] | None = None) -> Admitted:
        """Store the job if every quota has room (Overloaded if one has none), with where it stands.

        Its ETA is its plan's cost on the workers' measured timings, each job ahead of it in the
        queue counted as costing the same (a spec without a plan, which no worker runs: 0). `job_id` and
        `broker_message`: as JobStore.admit takes them (the job sent in the same step).
        """
        workers = self.workers()
        slots = sum(max(1, w.concurrency) for w in workers) or 1
        job_seconds = cost.estimate_plan(spec.plan, readiness.timings(workers)) if spec.plan else 0.0
        queue = spec.priority
        quota = Quota(
            max_in_flight=self.quotas.tenant_max_jobs_in_flight,
            max_waiting=self.quotas.max_queue_depth[queue],
            per_minute=self.quotas.tenant_jobs_per_minute,
            window=int(now // WINDOW_SECONDS),
            window_seconds=WINDOW_SECONDS,
            slots=slots,
            job_seconds=job_seconds,
        )
        try:
            return self.store.admit(tenant, spec, quota, steps_total=job_steps, now=now, job_id=job_id,
                                    broker_message=broker_message, webhooks=webhooks)
        except QuotaExceeded as refused:
            raise self._overloaded(refused, quota, queue, now) from None

    @staticmethod
    def _overloaded(refused: QuotaExceeded, quota: Quota, queue: str, now: float) -> Overloaded:
        n = refused.counted
        if refused.limit == "tenant_in_flight":
            return Overloaded(
                f"tenant has {n} jobs queued or running, the limit is {quota.max_in_flight}",
                retry_after=max(1.0, quota.job_seconds),
                reason="tenant_in_flight",
            )
        if refused.limit == "queue_full":
            return Overloaded(
                f"the {queue} queue holds {n} jobs, its limit is {quota.max_waiting}",
                retry_after=min(60.0, max(1.0, n / max(1, quota.slots) * quota.job_seconds)),
                reason="queue_full",
            )
        return Overloaded(
            f"tenant submitted {n} jobs this minute, the limit is {quota.per_minute} a minute",
            retry_after=max(0.5, quota.window_seconds - now % quota.window_seconds),
            reason="tenant_rate",
        )
