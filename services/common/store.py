"""Job records, their event logs and their images in Redis.

Every change of state is one Lua script, i.e. one atomic compare-and-set: a job leaves
QUEUED/RUNNING exactly once, a redelivered task cannot finish a job twice, and nothing
is appended to a job's log after its `finished` event. A worker's writes carry the
attempt number it got from :meth:`JobStore.begin_attempt`; once a job is final, or taken
over by a later attempt, they are refused (the method returns None/False) and the worker
stops.

Keys (all under `Settings.key_prefix`):

    job:<id>                     hash    the record (spec JSON, state, counters, init image, mask)
    job:<id>:events              stream  the event log (see services.common.events)
    job:<id>:artifacts           hash    image index -> encoded image bytes
    tenant:<t>:inflight          set     ids of the tenant's queued and running jobs
    tenant:<t>:rate:<minute>     string  jobs the tenant submitted in that minute (admission)
    queue:<q>:waiting            set     keys (job:<id>) of the jobs admitted to queue <q> that no
                                         attempt has begun yet: what the queue cap counts
    tenant:<t>:request:<rid>     string  idempotency key -> job id
    outbox                       zset    ids of jobs stored but not yet handed to the broker,
                                         scored by creation time (see :meth:`JobStore.unsent`)
    leases                       zset    ids of jobs a worker holds, scored by when the hold
                                         lapses (services/worker/leases.py)

A finished job's keys expire after `result_ttl_seconds`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import redis

from services.common import events as ev
from services.common.events import EventKind, JobEvent
from services.common.jobs import ErrorCode, JobRecord, JobSpec, JobState, Priority
from services.common.queues import broker_lists


class JobNotFound(LookupError):
    """No such job (or it belongs to another tenant, or it expired)."""


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


def new_job_id() -> str:
    return uuid.uuid4().hex


# The job and its outbox entry are written together: a gateway that dies before it hands
# the job to the broker leaves the entry behind, and a sweeper sends the job later (the
# transactional-outbox pattern), so no accepted job is ever stranded in QUEUED.
#
# With a quota (ARGV[5], see :class:`Quota`) the limits are checked and taken in the same
# step, so concurrent Submits on any number of gateways can never overshoot them: the
# tenant's in-flight set, the queue's waiting set (or Celery's lists of the queue when they
# hold more: jobs the broker redelivers were admitted long ago), and the tenant's counter of
# this minute, which only an admitted job increments.
#
# KEYS: 1 job, 2 events, 3 the tenant's in-flight set, 4 outbox, 5 the job's queue's waiting
#       set, 6 the idempotency key (used only when ARGV[4], the request id, is set); with a
#       quota also 7 the tenant's rate counter, 8 the interactive queue's waiting set, then
#       the broker lists of the job's queue and, for a batch job, those of the interactive
#       queue (quota.lists of each).
# ARGV: 1 job id, 2 time, 3 the queued event's data, 4 request id, 5 quota JSON or '',
#       6 the names the queued event's position and ETA go under (events.store_filled),
#       7... the record's fields.
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
  local depth = waiting(5, 9)
  if depth >= quota.max_waiting then return {-1, 'queue_full', depth} end
  local used = tonumber(redis.call('GET', KEYS[7]) or '0')
  if used >= quota.per_minute then return {-1, 'tenant_rate', used} end
  if redis.call('INCR', KEYS[7]) == 1 then redis.call('EXPIRE', KEYS[7], quota.window_ttl) end
  position = depth
  if KEYS[8] ~= KEYS[5] then position = position + waiting(8, 9 + quota.lists) end
  local data, filled = cjson.decode(queued), cjson.decode(ARGV[6])
  -- Each job ahead holds one of the workers' slots for about one job time; this one runs after them.
  local eta_seconds = (math.floor(position / quota.slots) + 1) * quota.job_seconds
  data[filled[1]], data[filled[2]] = position, eta_seconds
  queued, eta = cjson.encode(data), tostring(eta_seconds)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[5], KEYS[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
if ARGV[4] ~= '' then redis.call('SET', KEYS[6], ARGV[1]) end
redis.call('XADD', KEYS[2], '*', 'kind', 'queued', 'time', ARGV[2], 'data', queued)
return {1, ARGV[1], position, eta}
"""

# A sweeper leases an outbox entry by moving its score to now: whoever moved it sends the
# job; if that sweeper dies before sending, the entry comes due again one grace period later.
_CLAIM_UNSENT = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


def _leave_waiting(first: int) -> str:
    """Lua that takes the job (KEYS[1]) out of every queue's waiting set, which are
    KEYS[first]... in the order of :meth:`JobStore.waiting_keys`. Idempotent: a set forgets a
    member once, so a queue slot is given back exactly once whichever path gets there first."""
    last = first + len(Priority.ALL) - 1
    return f"for i = {first}, {last} do redis.call('SREM', KEYS[i], KEYS[1]) end\n"


# QUEUED -> RUNNING, or RUNNING -> RUNNING when a lost worker's job is redelivered; the
# attempt number fences off writes of earlier attempts. The time in queue is computed here
# from the record, so starting a job costs one round trip, not a read first. With a lease
# holder (ARGV[5], see services/worker/leases.py) only the delivery holding the job's lease
# may begin it, so a second delivery of a job that a live worker runs begins nothing.
# KEYS: 1 job, 2 events, 3... the queues' waiting sets (a started job frees its queue slot).
# ARGV: 1 time, 2 worker, 3 the started event's data, 4 the names its attempt and time in
#       queue go under (events.store_filled), 5 lease holder (optional).
_BEGIN = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'QUEUED' and state ~= 'RUNNING' then return false end
if ARGV[5] and redis.call('HGET', KEYS[1], 'lease') ~= ARGV[5] then return false end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'started_at', ARGV[1], 'worker', ARGV[2])
""" + _leave_waiting(3) + """local data, filled = cjson.decode(ARGV[3]), cjson.decode(ARGV[4])
data[filled[1]] = attempt
data[filled[2]] = math.max(0, tonumber(ARGV[1]) - tonumber(redis.call('HGET', KEYS[1], 'created_at')))
local id = redis.call('XADD', KEYS[2], '*', 'kind', 'started', 'time', ARGV[1], 'data', cjson.encode(data))
return {attempt, id}
"""

_APPEND = """
if redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then return false end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return false end
local n = tonumber(ARGV[5])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 6, 5 + 2 * n)) end
local blob = ARGV[6 + 2 * n]
if blob then
  return redis.call('XADD', KEYS[2], '*', 'kind', ARGV[3], 'time', ARGV[2], 'data', ARGV[4], 'blob', blob)
end
return redis.call('XADD', KEYS[2], '*', 'kind', ARGV[3], 'time', ARGV[2], 'data', ARGV[4])
"""

# HSETNX makes each image index land once, whichever attempt produced it.
_ARTIFACT = """
if redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then return false end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return false end
if redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[5]) == 0 then return false end
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('HINCRBY', KEYS[1], 'images_done', 1)
return redis.call('XADD', KEYS[2], '*', 'kind', 'artifact', 'time', ARGV[2], 'data', ARGV[3])
"""

# KEYS: 1 job, 2 events, 3 the tenant's in-flight set, 4 artifacts, 5... the queues' waiting
# sets, then the idempotency key if the job has one. ARGV 9: the finished event's data, 10: the
# names its images and elapsed time go under (events.store_filled). A final job leaves both (its tenant's
# in-flight slot and, if it never started, its queue slot are given back); its own keys expire.
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
local allowed = false
for s in string.gmatch(ARGV[2], '%S+') do
  if s == state then allowed = true end
end
if not allowed then return false end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[3] then return false end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished_at', ARGV[4], 'error_code', ARGV[5], 'error_message', ARGV[6])
redis.call('SREM', KEYS[3], ARGV[8])
""" + _leave_waiting(5) + """local created = tonumber(redis.call('HGET', KEYS[1], 'created_at'))
local data, filled = cjson.decode(ARGV[9]), cjson.decode(ARGV[10])
data[filled[1]] = tonumber(redis.call('HGET', KEYS[1], 'images_done') or '0')
data[filled[2]] = tonumber(ARGV[4]) - created
local id = redis.call('XADD', KEYS[2], '*', 'kind', 'finished', 'time', ARGV[4], 'data', cjson.encode(data))
for i = 1, #KEYS do
  if i ~= 3 and (i < 5 or i >= 5 + """ + str(len(Priority.ALL)) + """) then redis.call('EXPIRE', KEYS[i], ARGV[7]) end
end
return id
"""


class JobStore:
    """All reads and writes of job records and events. Thread-safe (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, key_prefix: str = "atelier:", result_ttl_seconds: int = 24 * 3600):
        self.client = client
        self.prefix = key_prefix
        self.result_ttl_seconds = int(result_ttl_seconds)
        self._create = client.register_script(_CREATE)
        self._begin = client.register_script(_BEGIN)
        self._append = client.register_script(_APPEND)
        self._artifact = client.register_script(_ARTIFACT)
        self._finish = client.register_script(_FINISH)
        self._claim_unsent = client.register_script(_CLAIM_UNSENT)

    # --- keys

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def events_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    def artifacts_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:artifacts"

    def inflight_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:inflight"

    def request_key(self, tenant: str, request_id: str) -> str:
        return f"{self.prefix}tenant:{tenant}:request:{request_id}"

    def rate_key(self, tenant: str, window: int) -> str:
        return f"{self.prefix}tenant:{tenant}:rate:{window}"

    def waiting_key(self, queue: str) -> str:
        return f"{self.prefix}queue:{queue}:waiting"

    def waiting_keys(self) -> list[str]:
        """Every queue's waiting set, in the order the Lua of `_leave_waiting` expects them."""
        return [self.waiting_key(q) for q in Priority.ALL]

    # --- the gateway's side

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
    ) -> tuple[str, bool]:
        """Store a new QUEUED job and its `queued` event, under no quota; returns (job_id, created).

        With a `spec.request_id` already used by this tenant, nothing is written and the
        existing job's id comes back with created=False.
        """
        found = self._store_new(tenant, spec, None, job_id, steps_total, queue_position, eta_seconds, now)
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
    ) -> Admitted:
        """Check `quota` and store the new QUEUED job in one atomic step; QuotaExceeded if a limit
        is reached (nothing is then written or counted).

        The job's position counts the jobs admitted before it and not yet started (for a batch
        job the interactive queue's too, which workers drain first); its queued event carries
        that position and the ETA. A request id the tenant already used admits nothing and
        names the existing job (created=False), whatever the limits.
        """
        return self._store_new(tenant, spec, quota, job_id, steps_total, 0, 0.0, now)

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
    ) -> Admitted:
        job_id = job_id or new_job_id()
        now = time.time() if now is None else now
        keys = [
            self.job_key(job_id),
            self.events_key(job_id),
            self.inflight_key(tenant),
            self.outbox_key,
            self.waiting_key(spec.priority),
            self.request_key(tenant, spec.request_id),
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
            "spec": spec.to_json(),
            "created_at": repr(now),
            "attempt": 0,
            "steps_done": 0,
            "steps_total": int(steps_total),
            "images_done": 0,
            "request_id": spec.request_id,
        }
        if spec.init_image:
            record["init_image"] = spec.init_image
        if spec.mask:
            record["mask"] = spec.mask
        payload = ev.Queued(queue_position, eta_seconds, spec.priority)
        queued = ev.to_fields(payload, now)
        args: list[Any] = [job_id, queued["time"], queued["data"], spec.request_id, quota_json,
                           ev.store_filled(payload)]
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
        if reply[0] == 0 or quota is None:
            return Admitted(reply[1].decode(), bool(reply[0]), queue_position, eta_seconds)
        return Admitted(job_id, True, int(reply[2]), float(reply[3]))

    def cancel(self, job_id: str, tenant: str | None = None, now: float | None = None) -> tuple[str, bool]:
        """Cancel a queued or running job; returns (state after the call, whether this call cancelled it).

        A running job's worker sees the state change at its next step and stops.
        """
        record = self.get(job_id, tenant)
        done = self._finish_job(record, JobState.CANCELLED, JobState.ACTIVE, None, ErrorCode.NONE, "", now)
        if done:
            # Workers listen (services.worker.cancellations) and stop the job at its next step.
            self.client.publish(self.cancel_channel, job_id)
            return JobState.CANCELLED, True
        return self.get(job_id, tenant).state, False

    def expire(self, job_id: str, now: float | None = None) -> bool:
        """Mark a queued or running job EXPIRED (its deadline passed)."""
        record = self.get(job_id)
        return self._finish_job(
            record, JobState.EXPIRED, JobState.ACTIVE, None, ErrorCode.NONE, "deadline passed", now
        )

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel on which the id of every cancelled job is announced."""
        return f"{self.prefix}cancelled"

    # --- the outbox: jobs stored but not yet on the broker

    @property
    def outbox_key(self) -> str:
        return f"{self.prefix}outbox"

    def sent(self, job_id: str) -> bool:
        """Take a job out of the outbox; True for the one caller that removed it."""
        return bool(self.client.zrem(self.outbox_key, job_id))

    def unsent(self, older_than_seconds: float, now: float | None = None, limit: int = 500) -> list[str]:
        """Ids of jobs stored more than `older_than_seconds` ago and never handed to the broker."""
        now = time.time() if now is None else now
        found = self.client.zrangebyscore(self.outbox_key, "-inf", now - older_than_seconds, start=0, num=limit)
        return [m.decode() for m in found]

    def claim_unsent(self, job_id: str, older_than_seconds: float, now: float | None = None) -> bool:
        """Lease an overdue outbox entry to this caller (True) unless another sweeper has it."""
        now = time.time() if now is None else now
        args = [job_id, repr(now - older_than_seconds), repr(now)]
        return bool(self._claim_unsent(keys=[self.outbox_key], args=args))

    def count_in_flight(self, tenant: str) -> int:
        return int(self.client.scard(self.inflight_key(tenant)))

    def in_flight(self, tenant: str) -> set[str]:
        return {m.decode() for m in self.client.smembers(self.inflight_key(tenant))}

    def find_request(self, tenant: str, request_id: str) -> str | None:
        found = self.client.get(self.request_key(tenant, request_id))
        return found.decode() if found else None

    # --- reading

    def get(self, job_id: str, tenant: str | None = None) -> JobRecord:
        """The job, or JobNotFound (also when `tenant` is given and owns no such job)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.job_key(job_id))
        pipe.xrevrange(self.events_key(job_id), count=1)
        fields, last = pipe.execute()
        if not fields or (tenant is not None and fields[b"tenant"].decode() != tenant):
            raise JobNotFound(job_id)
        return _record(job_id, fields, last[0][0].decode() if last else "")

    def still_running(self, job_id: str, attempt: int) -> bool:
        """Whether `attempt` may go on: the cheap check a worker makes between sampler steps."""
        state, current = self.client.hmget(self.job_key(job_id), "state", "attempt")
        return state == JobState.RUNNING.encode() and current == str(attempt).encode()

    def artifact_bytes(self, job_id: str, index: int) -> bytes | None:
        return self.client.hget(self.artifacts_key(job_id), str(index))

    def artifact_indices(self, job_id: str) -> set[int]:
        return {int(k) for k in self.client.hkeys(self.artifacts_key(job_id))}

    def read_events(self, job_id: str, after: str = "", count: int | None = None) -> list[JobEvent]:
        """Events after id `after` ("" or "0": from the first), oldest first."""
        start = f"({after}" if after and after != "0" else "-"
        entries = self.client.xrange(self.events_key(job_id), min=start, max="+", count=count)
        return [self._decode(job_id, eid, fields) for eid, fields in entries]

    def follow_events(
        self, job_id: str, after: str = "", block_ms: int = 1000, timeout: float | None = None
    ) -> Iterator[JobEvent]:
        """Yield events after `after` as they come; ends after `finished` (or on `timeout` seconds of quiet).

        Raises JobNotFound when the job does not exist (or expired).
        """
        last = after if after and after != "0" else "0-0"
        key = self.events_key(job_id)
        quiet_since = time.monotonic()
        while True:
            reply = self.client.xread({key: last}, block=block_ms, count=64)
            if not reply:
                if not self.client.exists(self.job_key(job_id)):
                    raise JobNotFound(job_id)
                if timeout is not None and time.monotonic() - quiet_since > timeout:
                    return
                continue
            quiet_since = time.monotonic()
            for eid, fields in reply[0][1]:
                event = self._decode(job_id, eid, fields)
                last = event.id
                yield event
                if event.is_final:
                    return

    def _decode(self, job_id: str, eid: bytes, fields: dict[bytes, bytes]) -> JobEvent:
        event = ev.from_fields(job_id, eid, fields)
        if event.kind == EventKind.ARTIFACT and event.blob is None:
            # Image bytes live in the artifacts hash, once, not in every reader's stream copy.
            blob = self.artifact_bytes(job_id, event.data["index"])
            event = JobEvent(event.id, event.time, event.job_id, event.kind, event.data, blob)
        return event

    # --- the worker's side

    def begin_attempt(
        self, job_id: str, worker: str, execution_provider: str = "", now: float | None = None,
        lease: str | None = None,
    ) -> int | None:
        """QUEUED/RUNNING -> RUNNING with a new attempt number (and a `started` event); None if final
        (or if there is no such job, or `lease` is given and is not the job's lease holder)."""
        now = time.time() if now is None else now
        payload = ev.Started(worker, execution_provider)  # its attempt and time in queue: filled in by _BEGIN
        args = [repr(now), worker, ev.to_json(payload), ev.store_filled(payload)]
        if lease is not None:
            args.append(lease)
        reply = self._begin(keys=[self.job_key(job_id), self.events_key(job_id), *self.waiting_keys()], args=args)
        return int(reply[0]) if reply else None

    def append_event(
        self,
        job_id: str,
        attempt: int,
        payload: ev.Progress | ev.Preview,
        blob: bytes | None = None,
        updates: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> str | None:
        """Append a progress or preview event (and set record fields) if `attempt` still owns the job."""
        fields = ev.to_fields(payload, time.time() if now is None else now)
        updates = updates or {}
        args: list[Any] = [attempt, fields["time"], fields["kind"], fields["data"], len(updates)]
        for name, value in updates.items():
            args += [name, value]
        if blob is not None:
            args.append(blob)
        reply = self._append(keys=[self.job_key(job_id), self.events_key(job_id)], args=args)
        return reply.decode() if reply else None

    def add_artifact(
        self, job_id: str, attempt: int, payload: ev.Artifact, blob: bytes, now: float | None = None
    ) -> str | None:
        """Store image `payload.index` and its `artifact` event, once per index; None if refused."""
        fields = ev.to_fields(payload, time.time() if now is None else now)
        reply = self._artifact(
            keys=[self.job_key(job_id), self.events_key(job_id), self.artifacts_key(job_id)],
            args=[attempt, fields["time"], fields["data"], payload.index, blob, self.result_ttl_seconds],
        )
        return reply.decode() if reply else None

    def finish(
        self,
        job_id: str,
        attempt: int | None,
        state: str,
        error_code: str = ErrorCode.NONE,
        error_message: str = "",
        now: float | None = None,
        record: JobRecord | None = None,
    ) -> bool:
        """RUNNING (this attempt) -> a final state, with the `finished` event. False if not allowed.

        `attempt=None` finishes a job that no attempt has begun (QUEUED or RUNNING), e.g.
        one whose deadline passed before it started. `record`: the job as the caller already
        read it, which saves reading it again (only its tenant and request id are used, and
        those never change).
        """
        if state not in JobState.FINAL:
            raise ValueError(f"{state!r} is not a final state")
        if record is None or record.job_id != job_id:
            record = self.get(job_id)
        from_states = (JobState.RUNNING,) if attempt is not None else JobState.ACTIVE
        return self._finish_job(record, state, from_states, attempt, error_code, error_message, now)

    def _finish_job(
        self,
        record: JobRecord,
        state: str,
        from_states: tuple[str, ...],
        attempt: int | None,
        error_code: str,
        error_message: str,
        now: float | None,
    ) -> bool:
        job_id = record.job_id
        keys = [
            self.job_key(job_id),
            self.events_key(job_id),
            self.inflight_key(record.tenant),
            self.artifacts_key(job_id),
            *self.waiting_keys(),
        ]
        if record.spec.request_id:
            keys.append(self.request_key(record.tenant, record.spec.request_id))
        now = time.time() if now is None else now
        payload = ev.Finished(state, error_code, error_message[:2000])  # images, elapsed: filled in by _FINISH
        reply = self._finish(
            keys=keys,
            args=[
                state,
                " ".join(from_states),
                "" if attempt is None else str(attempt),
                repr(now),
                error_code,
                error_message[:2000],
                self.result_ttl_seconds,
                job_id,
                ev.to_json(payload),
                ev.store_filled(payload),
            ],
        )
        return bool(reply)


def _record(job_id: str, f: dict[bytes, bytes], last_event_id: str) -> JobRecord:
    def text(name: str) -> str:
        return f.get(name.encode(), b"").decode()

    def number(name: str) -> float | None:
        raw = text(name)
        return float(raw) if raw else None

    spec = JobSpec.from_json(f[b"spec"], f.get(b"init_image"), f.get(b"mask"))
    return JobRecord(
        job_id=job_id,
        tenant=text("tenant"),
        spec=spec,
        state=text("state"),
        created_at=number("created_at") or 0.0,
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        attempt=int(text("attempt") or 0),
        worker=text("worker"),
        steps_done=int(text("steps_done") or 0),
        steps_total=int(text("steps_total") or 0),
        images_done=int(text("images_done") or 0),
        error_code=text("error_code"),
        error_message=text("error_message"),
        last_event_id=last_event_id,
    )
