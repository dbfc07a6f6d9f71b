"""A worker's writes: begin an attempt, then append events and images, each fenced by the attempt
number so a job taken over by a later attempt (or final) refuses them."""

from __future__ import annotations

import time
from typing import Any

from services.common import events as ev
from services.common.jobs import FinishReason, JobState
from services.common.store.keys import leave_waiting

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
""" + leave_waiting(3) + """local data, filled = cjson.decode(ARGV[3]), cjson.decode(ARGV[4])
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
if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[1], 'images_filtered', 1) end
return redis.call('XADD', KEYS[2], '*', 'kind', 'artifact', 'time', ARGV[2], 'data', ARGV[3])
"""


class Attempts:
    """A mixin of JobStore."""

    def still_running(self, job_id: str, attempt: int) -> bool:
        """Whether `attempt` may go on: the cheap check a worker makes between sampler steps."""
        state, current = self.client.hmget(self.job_key(job_id), "state", "attempt")
        return state == JobState.RUNNING.encode() and current == str(attempt).encode()

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
            args=[attempt, fields["time"], fields["data"], payload.index, blob, self.result_ttl_seconds,
                  "1" if payload.finish_reason in FinishReason.WITHHELD else "0"],
        )
        return reply.decode() if reply else None
