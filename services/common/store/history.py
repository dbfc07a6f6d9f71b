"""A tenant's job history, newest first: the index the admission script writes and the pages
ListJobs reads from it (docs/ARCHITECTURE.md, "Job history").

`tenant:<t>:jobs` is a sorted set: member the job id, score its creation time in whole
milliseconds. Members of one score sort by id, so (score, id) orders every job of a tenant
totally, and a page ends at a :class:`Position` rather than an offset: a job created while
a client pages sorts before the first page and never shifts the later ones, so paging from
the first page to the last returns every job that existed when it began exactly once.

An entry outlives its record when the record expires (a finished job's keys expire after the
result TTL). The admission script drops expired entries from the old end as new jobs arrive
(:data:`ADD_AND_TRIM`); a page skips, and removes, any other entry whose record is gone, so a
listed job can always be read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from services.common.jobs import JobRecord
from services.common.store.reading import JobNotFound, record_of

# Lua run by the admission script after it wrote the job (KEYS[1], id ARGV[1], time ARGV[2]):
# the job joins KEYS[7], its tenant's history, and the TRIM oldest entries whose record has
# expired leave it. The job keys it checks are derived from KEYS[1]'s prefix rather than
# passed in, because which ones they are is known only inside the script; the store runs on
# one Redis (not a cluster), where that is allowed.
TRIM = 3
ADD_AND_TRIM = f"""redis.call('ZADD', KEYS[7], math.floor(tonumber(ARGV[2]) * 1000), ARGV[1])
local job_prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1])
for _, old in ipairs(redis.call('ZRANGE', KEYS[7], 0, {TRIM - 1})) do
  if redis.call('EXISTS', job_prefix .. old) == 0 then redis.call('ZREM', KEYS[7], old) end
end
"""

_BATCH = 256  # history entries read per round trip
# Only these fields of a record are read for a page: an uploaded image can be megabytes and
# a page needs none of it.
_FIELDS = ("tenant", "state", "spec", "kind", "created_at", "started_at", "finished_at", "attempt", "worker",
           "steps_done", "steps_total", "images_done", "error_code", "error_message", "request_id")


def created_ms(seconds: float) -> int:
    """A creation time's score in the history, as the admission script computes it."""
    return math.floor(seconds * 1000)


@dataclass(frozen=True)
class Position:
    """A place in a tenant's history: the entry (score, job id) a page ended after."""

    created_ms: int
    job_id: str


@dataclass(frozen=True)
class HistoryFilter:
    """Which jobs a page holds: empty sets and None bounds let everything through.
    `created_after` is inclusive, `created_before` exclusive (Unix seconds)."""

    states: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    created_after: float | None = None
    created_before: float | None = None

    def matches(self, record: JobRecord) -> bool:
        if self.states and record.state not in self.states:
            return False
        if self.kinds and record.kind not in self.kinds:
            return False
        if self.created_after is not None and record.created_at < self.created_after:
            return False
        return self.created_before is None or record.created_at < self.created_before


@dataclass(frozen=True)
class HistoryPage:
    records: list[JobRecord]
    next: Position | None  # where the next page starts after; None: this was the last page


class History:
    """A mixin of JobStore."""

    def history(
        self,
        tenant: str,
        limit: int,
        where: HistoryFilter = HistoryFilter(),
        after: Position | None = None,
        budget: int = 10_000,
    ) -> HistoryPage:
        """Up to `limit` of the tenant's jobs that `where` lets through, newest first, after
        `after`. At most `budget` entries are examined: a page that reaches it ends early,
        with fewer jobs and a position to go on from (AIP-158 allows a short page)."""
        entries = self._entries(tenant, where, after)
        records: list[JobRecord] = []
        examined, last, more = 0, after, False
        while len(records) < limit and examined < budget:
            chunk = _take(entries, min(_BATCH, budget - examined, max(limit - len(records), 16)))
            if not chunk:
                return HistoryPage(records, None)
            pipe = self.client.pipeline(transaction=False)
            for _, job_id in chunk:
                pipe.hmget(self.job_key(job_id), _FIELDS)
                pipe.xrevrange(self.events_key(job_id), count=1)
            replies = pipe.execute()
            gone = []
            for i, (score, job_id) in enumerate(chunk):
                values, latest = replies[2 * i], replies[2 * i + 1]
                fields = {name.encode(): v for name, v in zip(_FIELDS, values, strict=True) if v is not None}
                examined += 1
                last = Position(score, job_id)
                try:
                    record = record_of(job_id, fields, latest[0][0].decode() if latest else "", tenant)
                except JobNotFound:
                    gone.append(job_id)
                    continue
                if where.matches(record):
                    records.append(record)
                    if len(records) == limit:
                        more = i + 1 < len(chunk)
                        break
            if gone:
                # Expired records: their entries go now rather than wait for the trim at admission.
                self.client.zrem(self.history_key(tenant), *gone)
        more = more or bool(_take(entries, 1))
        return HistoryPage(records, last if more else None)

    def _entries(self, tenant: str, where: HistoryFilter, after: Position | None) -> Iterator[tuple[int, str]]:
        """(score, job id) of the tenant's history, newest first, after `after`, within the
        filter's creation bounds (to the millisecond: `HistoryFilter.matches` decides the rest)."""
        key = self.history_key(tenant)
        low = "-inf" if where.created_after is None else created_ms(where.created_after)
        high: int | str = "+inf" if where.created_before is None else created_ms(where.created_before)
        if after is not None:
            if high == "+inf" or after.created_ms <= int(high):
                # The rest of the entry's own millisecond: ids below its id, highest first.
                ties = self.client.zrangebyscore(key, after.created_ms, after.created_ms)
                for member in reversed(ties):
                    if member.decode() < after.job_id:
                        yield after.created_ms, member.decode()
                high = f"({after.created_ms}"
        while True:
            batch = self.client.zrevrangebyscore(key, high, low, start=0, num=_BATCH, withscores=True)
            if len(batch) < _BATCH:
                yield from ((int(score), member.decode()) for member, score in batch)
                return
            # The batch may end inside one millisecond's entries: hand over the whole millisecond.
            edge = int(batch[-1][1])
            yield from ((int(score), member.decode()) for member, score in batch if int(score) > edge)
            ties = self.client.zrangebyscore(key, edge, edge)
            yield from ((edge, member.decode()) for member in reversed(ties))
            high = f"({edge}"


def _take(entries: Iterator[tuple[int, str]], n: int) -> list[tuple[int, str]]:
    out = []
    for entry in entries:
        out.append(entry)
        if len(out) == n:
            break
    return out
