"""The Redis keys of a job store (the table in services/common/store/__init__.py), and the Lua
that gives a job's queue slot back, which depends on the order of those keys."""

from __future__ import annotations

from services.common.jobs import Priority


class KeyNames:
    """Key and channel names under one prefix."""

    prefix: str

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def events_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    def artifacts_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:artifacts"

    def shards_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:shards"

    def inflight_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:inflight"

    def request_key(self, tenant: str, request_id: str) -> str:
        return f"{self.prefix}tenant:{tenant}:request:{request_id}"

    def history_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}:jobs"

    def rate_key(self, tenant: str, window: int) -> str:
        return f"{self.prefix}tenant:{tenant}:rate:{window}"

    def waiting_key(self, queue: str) -> str:
        return f"{self.prefix}queue:{queue}:waiting"

    def waiting_keys(self) -> list[str]:
        """Every queue's waiting set, in the order the Lua of `_leave_waiting` expects them."""
        return [self.waiting_key(q) for q in Priority.ALL]

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel on which the id of every cancelled job is announced."""
        return f"{self.prefix}cancelled"

    @property
    def outbox_key(self) -> str:
        return f"{self.prefix}outbox"


def leave_waiting(first: int) -> str:
    """Lua that takes the job (KEYS[1]) out of every queue's waiting set, which are
    KEYS[first]... in the order of :meth:`KeyNames.waiting_keys`. Idempotent: a set forgets a
    member once, so a queue slot is given back exactly once whichever path gets there first."""
    last = first + len(Priority.ALL) - 1
    return f"for i = {first}, {last} do redis.call('SREM', KEYS[i], KEYS[1]) end\n"
