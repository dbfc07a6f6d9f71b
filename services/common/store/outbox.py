"""The outbox: jobs stored but not yet handed to the broker, and the sweepers' lease on them."""

from __future__ import annotations

import time

# A sweeper leases an outbox entry by moving its score to now: whoever moved it sends the
# job; if that sweeper dies before sending, the entry comes due again one grace period later.
_CLAIM_UNSENT = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


class Outbox:
    """A mixin of JobStore."""

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
