"""New jobs: stored with their `queued` event and outbox entry, under a quota or none, in one
Lua step, and the tenant's in-flight and idempotency reads."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import redis

from services.common import events as ev
from services.common.jobs import UPLOADS, JobSpec, JobState, Priority
from services.common.plan import job_kind
from services.common.queues import broker_lists
from services.common.store import history
from services.common.webhooks.deliveries import FOLLOW


class DuplicateJob(ValueError):
    """A job with this id already exists."""


@dataclass(frozen=True)
class Quota:
    """The limits a new job is admitted under (:meth:`JobStore.admit`), and what its ETA needs."""

    max_in_flight: int  # the tenant's queued and running jobs
    max_waiting: int  # jobs admitted to the job's queue and not yet started
    per_minute: int  # jobs the tenant may submit in one rate window
    window: int  # the current rate window's number (Unix time // window_seconds)
    window_seconds: int
    slots: int  # job slots across the live workers
    job_seconds: float  # about how long this job holds one slot


class QuotaExceeded(RuntimeError):
    """Admission refused: `limit` is tenant_in_flight, queue_full or tenant_rate; `counted`
    the jobs the limit counted when it refused."""

    def __init__(self, limit: str, counted: int):
        super().__init__(f"{limit}: {counted}")
        self.limit, self.counted = limit, counted


@dataclass(frozen=True)
class Admitted:
    job_id: str
    created: bool  # False: the tenant's request id named an existing job, nothing was written
    position: int  # admitted jobs ahead of it
    eta_seconds: float
    sent: bool = False  # the admission step also put it on its broker queue (no outbox entry)


def new_job_id() -> str:
    return uuid.uuid4().hex


# The job and its outbox entry are written together: a gateway that dies before it hands
# the job to the broker leaves the entry behind, and a sweeper sends the job later (the
# transactional-outbox pattern), so no accepted job is ever stranded in QUEUED. Where the
# caller gives the broker's message itself (ARGV[7], services.common.queues.broker_message),
# the script pushes it onto the queue's broker list (KEYS[8]) in the same step instead: the
# job is stored and sent at once, so there is no gap to close and no outbox entry to write or
# take out again (one round trip a Submit instead of three).
#
# With a quota (ARGV[5], see :class:`Quota`) the limits are checked and taken in the same
# step, so concurrent Submits on any number of gateways can never overshoot them: the
# tenant's in-flight set, the queue's waiting set (or Celery's lists of the queue when they
# hold more: jobs the broker redelivers were admitted long ago), and the tenant's counter of
# this minute, which only an admitted job increments.
#
# The job also joins its tenant's history (ListJobs, services/common/store/history.py), scored
# by its creation time in ms; the oldest entries whose record has expired leave it here, a few
# per new job, so the index follows the records' TTL without a sweeper.
#
# A job with webhooks (its record's `webhooks` field) joins the jobs the webhook dispatcher
# follows in the same step, so none of its events can be missed.
#
# KEYS: 1 job, 2 events, 3 the tenant's in-flight set, 4 outbox, 5 the job's queue's waiting
#       set, 6 the idempotency key (used only when ARGV[4], the request id, is set), 7 the
#       tenant's history, 8 the broker list the message goes to (used only with ARGV[7]); with
#       a quota also 9 the tenant's rate counter, 10 the interactive queue's waiting set, then
#       the broker lists of the job's queue and, for a batch job, those of the interactive
#       queue (quota.lists of each).
# ARGV: 1 job id, 2 time, 3 the queued event's data, 4 request id, 5 quota JSON or '',
#       6 the names the queued event's position and ETA go under (events.store_filled),
#       7 the broker message or '', 8... the record's fields.
# Replies {1, id, position, eta}, {0, the existing job's id}, or {-1, limit, jobs counted}.
_CREATE = """
if ARGV[4] ~= '' then
  local existing = redis.call('GET', KEYS[6])
  if existing then return {0, existing} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('DUPLICATE job exists') end
local queued, position, eta = ARGV[3], 0, ''
if ARGV[5] ~= '' then
  local quota = cjson.decode(ARGV[5])
  local function waiting(set, first)
    local listed = 0
    for i = first, first + quota.lists - 1 do listed = listed + redis.call('LLEN', KEYS[i]) end
    return math.max(redis.call('SCARD', KEYS[set]), listed)
  end
  local in_flight = redis.call('SCARD', KEYS[3])
  if in_flight >= quota.max_in_flight then return {-1, 'tenant_in_flight', in_flight} end
  local depth = waiting(5, 11)
  if depth >= quota.max_waiting then return {-1, 'queue_full', depth} end
  local used = tonumber(redis.call('GET', KEYS[9]) or '0')
  if used >= quota.per_minute then return {-1, 'tenant_rate', used} end
  if redis.call('INCR', KEYS[9]) == 1 then redis.call('EXPIRE', KEYS[9], quota.window_ttl) end
  position = depth
  if KEYS[10] ~= KEYS[5] then position = position + waiting(10, 11 + quota.lists) end
  local data, filled = cjson.decode(queued), cjson.decode(ARGV[6])
  -- Each job ahead holds one of the workers' slots for about one job time; this one runs after them.
  local eta_seconds = (math.floor(position / quota.slots) + 1) * quota.job_seconds
  data[filled[1]], data[filled[2]] = position, eta_seconds
  queued, eta = cjson.encode(data), tostring(eta_seconds)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('SADD', KEYS[3], ARGV[1])
""" + FOLLOW + """redis.call('SADD', KEYS[5], KEYS[1])
if ARGV[7] == '' then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1]) end
if ARGV[4] ~= '' then redis.call('SET', KEYS[6], ARGV[1]) end
""" + history.ADD_AND_TRIM + """redis.call('XADD', KEYS[2], '*', 'kind', 'queued', 'time', ARGV[2], 'data', queued)
if ARGV[7] ~= '' then redis.call('LPUSH', KEYS[8], ARGV[7]) end
return {1, ARGV[1], position, eta}
"""


class Admitting:
    """The gateway's writes of new jobs (a mixin of JobStore)."""

    def create(
        self,
        tenant: str,
        spec: JobSpec,
        *,
        job_id: str | None = None,
        steps_total: int = 0,
        queue_position: int = 0,
        eta_seconds: float = 0.0,
        now: float | None = None,
        webhooks: str = "",
    ) -> tuple[str, bool]:
        """Store a new QUEUED job and its `queued` event, under no quota; returns (job_id, created).

        With a `spec.request_id` already used by this tenant, nothing is written and the
        existing job's id comes back with created=False.
        """
        found = self._store_new(tenant, spec, None, job_id, steps_total, queue_position, eta_seconds, now,
                                webhooks)
        return found.job_id, found.created

    def admit(
        self,
        tenant: str,
        spec: JobSpec,
        quota: Quota,
        *,
        job_id: str | None = None,
        steps_total: int = 0,
        now: float | None = None,
        broker_message: tuple[str, str] | None = None,
        webhooks: str = "",
    ) -> Admitted:
        """Check `quota` and store the new QUEUED job in one atomic step; QuotaExceeded if a limit
        is reached (nothing is then written or counted).

        The job's position counts the jobs admitted before it and not yet started (for a batch
        job the interactive queue's too, which workers drain first); its queued event carries
        that position and the ETA. A request id the tenant already used admits nothing and
        names the existing job (created=False), whatever the limits. `webhooks`: the job's
        `webhooks` record field (services/common/webhooks/deliveries.py), "" for none.

        With `broker_message` (the broker list and the message that sends the job `job_id`:
        services.common.queues.broker_message) the same step puts the job on its queue and it
        gets no outbox entry (`Admitted.sent`); without, the caller sends it and then takes it
        out of the outbox (:meth:`sent`).
        """
        if broker_message is not None and job_id is None:
            raise ValueError("a broker message names its job: pass the job_id it was made for")
        return self._store_new(tenant, spec, quota, job_id, steps_total, 0, 0.0, now, webhooks,
                               broker_message=broker_message)

    def _store_new(
        self,
        tenant: str,
        spec: JobSpec,
        quota: Quota | None,
        job_id: str | None,
        steps_total: int,
        queue_position: int,
        eta_seconds: float,
        now: float | None,
        webhooks: str = "",
        broker_message: tuple[str, str] | None = None,
    ) -> Admitted:
        job_id = job_id or new_job_id()
        now = time.time() if now is None else now
        broker_list, message = broker_message or (broker_lists(spec.priority)[0], "")
        keys = [
            self.job_key(job_id),
            self.events_key(job_id),
            self.inflight_key(tenant),
            self.outbox_key,
            self.waiting_key(spec.priority),
            self.request_key(tenant, spec.request_id),
            self.history_key(tenant),
            broker_list,
        ]
        quota_json = ""
        if quota is not None:
            lists = broker_lists(spec.priority)
            keys += [self.rate_key(tenant, quota.window), self.waiting_key(Priority.INTERACTIVE), *lists]
            if spec.priority != Priority.INTERACTIVE:
                keys += broker_lists(Priority.INTERACTIVE)
            quota_json = json.dumps({**asdict(quota), "slots": max(1, quota.slots), "lists": len(lists),
                                     "window_ttl": 2 * quota.window_seconds})
        record: dict[str, Any] = {
            "tenant": tenant,
            "state": JobState.QUEUED,
            "kind": spec.plan.kind if spec.plan is not None else job_kind(
                bool(spec.init_image), bool(spec.mask), bool(spec.upscale_image)),
            "spec": spec.to_json(),
            "created_at": repr(now),
            "attempt": 0,
            "steps_done": 0,
            "steps_total": int(steps_total),
            "images_done": 0,
            "request_id": spec.request_id,
        }
        if webhooks:
            record["webhooks"] = webhooks
        for upload in UPLOADS:
            if getattr(spec, upload):
                record[upload] = getattr(spec, upload)
        payload = ev.Queued(queue_position, eta_seconds, spec.priority)
        queued = ev.to_fields(payload, now)
        args: list[Any] = [job_id, queued["time"], queued["data"], spec.request_id, quota_json,
                           ev.store_filled(payload), message]
        for name, value in record.items():
            args += [name, value]
        try:
            reply = self._create(keys=keys, args=args)
        except redis.ResponseError as err:
            if "DUPLICATE" in str(err):
                raise DuplicateJob(job_id) from None
            raise
        if reply[0] == -1:
            raise QuotaExceeded(reply[1].decode(), int(reply[2]))
        sent = bool(message) and reply[0] == 1
        if reply[0] == 0 or quota is None:
            return Admitted(reply[1].decode(), bool(reply[0]), queue_position, eta_seconds, sent)
        return Admitted(job_id, True, int(reply[2]), float(reply[3]), sent)

    def count_in_flight(self, tenant: str) -> int:
        return int(self.client.scard(self.inflight_key(tenant)))

    def in_flight(self, tenant: str) -> set[str]:
        return {m.decode() for m in self.client.smembers(self.inflight_key(tenant))}

    def find_request(self, tenant: str, request_id: str) -> str | None:
        found = self.client.get(self.request_key(tenant, request_id))
        return found.decode() if found else None
