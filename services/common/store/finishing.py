"""A job's one final state: finished by its attempt, cancelled, or expired, with its `finished`
event; the tenant's and the queue's slots are given back and the job's keys expire."""

from __future__ import annotations

import time

from services.common import events as ev
from services.common.jobs import ErrorCode, JobRecord, JobState, Priority
from services.common.store.keys import leave_waiting

# KEYS: 1 job, 2 events, 3 the tenant's in-flight set, 4 artifacts, 5... the queues' waiting
# sets, then a dataset job's shards and the idempotency key if the job has one. ARGV 9: the
# finished event's data, 10: the names its images, elapsed time and filtered images go under
# (events.store_filled). A final job leaves both (its tenant's in-flight slot and, if it never
# started, its queue slot are given back); its own keys expire.
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
""" + leave_waiting(5) + """local created = tonumber(redis.call('HGET', KEYS[1], 'created_at'))
local data, filled = cjson.decode(ARGV[9]), cjson.decode(ARGV[10])
data[filled[1]] = tonumber(redis.call('HGET', KEYS[1], 'images_done') or '0')
data[filled[2]] = tonumber(ARGV[4]) - created
data[filled[3]] = tonumber(redis.call('HGET', KEYS[1], 'images_filtered') or '0')
local id = redis.call('XADD', KEYS[2], '*', 'kind', 'finished', 'time', ARGV[4], 'data', cjson.encode(data))
for i = 1, #KEYS do
  if i ~= 3 and (i < 5 or i >= 5 + """ + str(len(Priority.ALL)) + """) then redis.call('EXPIRE', KEYS[i], ARGV[7]) end
end
return id
"""


class Finishing:
    """A mixin of JobStore."""

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
            self.shards_key(job_id),
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
