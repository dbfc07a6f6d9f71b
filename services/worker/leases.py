"""Leases: a job whose worker died goes back to its queue in seconds, not at the visibility timeout.

A worker holds a lease on every job it has taken off the broker, from before it loads the
model until the job ends: the job's `lease` field names the holder (one token per delivery)
and the zset `<prefix>leases` scores the job by when the lease lapses, in Redis' own clock
(`TIME`), so the clocks of the machines never matter. The worker renews its leases every
third of `job_lease_seconds`. A lease that lapsed means its worker died (or lost Redis for
that long): the reaper, which runs in every worker, hands such a job back to its queue. Every
step is one Lua compare-and-set, so reapers need no leader: whichever wins a job sends it
once, and the others find nothing to do.

Handing back sets the job to QUEUED, which fences off the dead attempt (its writes need
RUNNING and its attempt number, see services/common/store/attempts.py), and puts the job in the outbox
before it is sent, so a reaper that dies before sending leaves it to the gateway's outbox
sweeper. Images the dead attempt stored are kept; the next attempt makes only the others.

Celery still acknowledges late, so the broker redelivers a dead worker's message after the
visibility timeout (the guarantee if every lease machinery failed). That delivery, like any
second delivery, finds the job final (nothing to do) or leased by a live holder (`claim`
refuses, the message is dropped): a job never runs twice at once.

A delivery that arrives while the job is QUEUED but unleased simply claims it: the reaper's
own message and the broker's late one may both arrive, and only the first begins the job.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis

from services.common.jobs import JobRecord
from services.common.queues import UNACKED_INDEX_KEY, UNACKED_KEY, job_of_delivery
from services.common.store import JobNotFound, JobStore
from services.common.store.reading import record_of

log = logging.getLogger(__name__)

# Redis' clock in milliseconds: every lease is measured on the one clock all workers share.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: job, leases. ARGV: job id, holder, lease ms. A job that is final, or leased by a holder
# whose lease has not lapsed, is refused.
_CLAIMED = _NOW + """
local function claimed()
  local state = redis.call('HGET', KEYS[1], 'state')
  if state ~= 'QUEUED' and state ~= 'RUNNING' then return 0 end
  local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if expiry and tonumber(expiry) > now then return 0 end
  redis.call('HSET', KEYS[1], 'lease', ARGV[2])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
"""
_CLAIM = _CLAIMED + "return claimed()\n"
# The same, and the job's record as it stands after it: a delivery reads and leases its job in
# one round trip (issue 19).
_CLAIM_READ = _CLAIMED + "local won = claimed()\nreturn {won, redis.call('HGETALL', KEYS[1])}\n"

# KEYS: leases, then the held jobs' keys. ARGV: lease ms, then (job id, holder) per job.
# Returns the ids whose lease this process no longer holds.
_RENEW = _NOW + """
local lost = {}
for i = 2, #KEYS do
  local id, holder = ARGV[2 * i - 2], ARGV[2 * i - 1]
  if redis.call('HGET', KEYS[i], 'lease') == holder and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id)
  else
    lost[#lost + 1] = id
  end
end
return lost
"""

# KEYS: job, leases. ARGV: job id, holder, "1" to hand the job back (RUNNING -> QUEUED).
_RELEASE = """
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'lease')
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[3] == '1' and redis.call('HGET', KEYS[1], 'state') == 'RUNNING' then
  redis.call('HSET', KEYS[1], 'state', 'QUEUED')
end
return 1
"""

# KEYS: job, leases, outbox. ARGV: job id, outbox score (Unix seconds). 1: this caller must send it.
_REAP = _NOW + """
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expiry or tonumber(expiry) > now then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'lease')
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'QUEUED' and state ~= 'RUNNING' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'QUEUED')
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""


# KEYS: the broker's unacked hash and its index, job, leases, outbox. ARGV: delivery tag, job
# id, outbox score. A delivery whose job is final (or gone) is dropped, its work is done; one
# whose job is leased is left to the lease; otherwise it is dropped and its job goes to the
# outbox, and 1 tells this caller to send it.
_ORPHAN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local state = redis.call('HGET', KEYS[3], 'state')
if state == 'QUEUED' or state == 'RUNNING' then
  if redis.call('ZSCORE', KEYS[4], ARGV[2]) then return 0 end
  redis.call('ZADD', KEYS[5], ARGV[3], ARGV[2])
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if state == 'QUEUED' or state == 'RUNNING' then return 1 end
return 0
"""


def leases_key(store: JobStore) -> str:
    return f"{store.prefix}leases"


class Leases:
    """The leases one worker process holds; thread-safe."""

    def __init__(self, store: JobStore, lease_seconds: float, owner: str = ""):
        if lease_seconds <= 0:
            raise ValueError(f"a lease must last a positive time, got {lease_seconds}")
        self.store, self.lease_seconds, self.owner = store, lease_seconds, owner
        self.key = leases_key(store)
        client = store.client
        self._claim = client.register_script(_CLAIM)
        self._claim_read = client.register_script(_CLAIM_READ)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._held: dict[str, str] = {}  # job id -> holder token
        self._lock = threading.Lock()

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease_seconds * 1000))

    def held(self) -> dict[str, str]:
        with self._lock:
            return dict(self._held)

    def holds(self, job_id: str, holder: str) -> bool:
        with self._lock:
            return self._held.get(job_id) == holder

    def forget(self, job_id: str, holder: str) -> None:
        """Stop renewing the lease (it lapses and a reaper hands the job back)."""
        with self._lock:
            if self._held.get(job_id) == holder:
                del self._held[job_id]

    def claim(self, job_id: str) -> str | None:
        """Lease the job to this delivery: its holder token, or None when the job is final or
        a live holder has it."""
        holder = f"{self.owner}/{uuid.uuid4().hex[:12]}"
        if not self._claim(keys=[self.store.job_key(job_id), self.key], args=[job_id, holder, self.lease_ms]):
            return None
        with self._lock:
            self._held[job_id] = holder
        return holder

    def claim_with_record(self, job_id: str) -> tuple[str | None, JobRecord]:
        """:meth:`claim` and the job's record, read in the same step (its last event id left empty);
        JobNotFound when there is no such job."""
        holder = f"{self.owner}/{uuid.uuid4().hex[:12]}"
        won, flat = self._claim_read(keys=[self.store.job_key(job_id), self.key], args=[job_id, holder, self.lease_ms])
        record = record_of(job_id, dict(zip(flat[::2], flat[1::2], strict=True)), "")
        if not won:
            return None, record
        with self._lock:
            self._held[job_id] = holder
        return holder, record

    def release(self, job_id: str, holder: str, hand_back: bool = False) -> bool:
        """Give the lease up (the job ended, or with `hand_back` goes back to QUEUED for another
        worker). False when the lease was no longer this holder's."""
        self.forget(job_id, holder)
        args = [job_id, holder, "1" if hand_back else "0"]
        return bool(self._release(keys=[self.store.job_key(job_id), self.key], args=args))

    def renew(self) -> list[str]:
        """Extend every lease this process holds; returns (and forgets) the ones it lost."""
        held = self.held()
        if not held:
            return []
        keys, args = [self.key], [self.lease_ms]
        for job_id, holder in held.items():
            keys.append(self.store.job_key(job_id))
            args += [job_id, holder]
        lost = [m.decode() for m in self._renew(keys=keys, args=args)]
        with self._lock:
            for job_id in lost:
                if self._held.get(job_id) == held[job_id]:
                    del self._held[job_id]
        return lost


class Reaper:
    """Hands back the jobs whose lease lapsed, and the jobs of deliveries no worker leased.

    A delivery is leased within milliseconds of reaching a live worker (before the model is
    even looked up). A worker killed in those milliseconds leaves a message in the broker's
    unacked hash and a QUEUED job with no lease; the broker would hand it out again only after
    the visibility timeout. So a delivery older than two lease periods whose job is neither
    final nor leased is taken out of the unacked hash and its job sent again.

    An outage lapses every lease at once, and live workers need a moment to renew theirs once
    Redis answers again: so nothing is reaped while Redis has been up for less than a lease
    period (a restart), nor within a lease period of this reaper reaching Redis again after
    losing it (a partition). A freshly started reaper on a settled Redis reaps at once.
    """

    def __init__(self, store: JobStore, send: Callable[[str, str], None], lease_seconds: float,
                 clock: Callable[[], float] = time.monotonic, batch: int = 100):
        self.store, self.send, self.lease_seconds, self.clock, self.batch = store, send, lease_seconds, clock, batch
        self.key = leases_key(store)
        self._reap = store.client.register_script(_REAP)
        self._orphan = store.client.register_script(_ORPHAN)
        self._lost_redis = False
        self._quiet_until = float("-inf")

    def settled(self) -> bool:
        """Whether Redis, and this reaper's link to it, have been up for a lease period."""
        try:
            uptime = int(self.store.client.info("server")["uptime_in_seconds"])
        except redis.RedisError:
            self._lost_redis = True
            raise
        now = self.clock()
        if self._lost_redis:
            self._lost_redis = False
            self._quiet_until = now + self.lease_seconds
        return uptime >= self.lease_seconds and now >= self._quiet_until

    def lapsed(self) -> list[str]:
        """Ids whose lease has lapsed, by Redis' clock."""
        seconds, micros = self.store.client.time()
        found = self.store.client.zrangebyscore(self.key, "-inf", f"({seconds * 1000 + micros // 1000}", start=0,
                                                num=self.batch)
        return [m.decode() for m in found]

    def orphaned(self) -> list[tuple[bytes, str]]:
        """(delivery tag, job id) of the broker's unacknowledged deliveries older than two lease
        periods (kombu stamps them with the delivering worker's clock: the margin covers skew)."""
        client = self.store.client
        tags = client.zrangebyscore(UNACKED_INDEX_KEY, "-inf", time.time() - 2 * self.lease_seconds, start=0,
                                    num=self.batch)
        if not tags:
            return []
        found = []
        for tag, raw in zip(tags, client.hmget(UNACKED_KEY, tags), strict=True):
            job_id = job_of_delivery(raw) if raw else None
            if job_id:
                found.append((tag, job_id))
        return found

    def reap_once(self) -> list[str]:
        """Hand back and send every job this reaper wins; returns their ids."""
        if not self.settled():
            return []
        sent = []
        for job_id in self.lapsed():
            won = self._reap(keys=[self.store.job_key(job_id), self.key, self.store.outbox_key],
                             args=[job_id, repr(time.time())])
            if won and self._send(job_id, "its worker's lease lapsed"):  # else: renewed, final, or another's
                sent.append(job_id)
        for tag, job_id in self.orphaned():
            keys = [UNACKED_KEY, UNACKED_INDEX_KEY, self.store.job_key(job_id), self.key, self.store.outbox_key]
            won = self._orphan(keys=keys, args=[tag, job_id, repr(time.time())])
            if won and self._send(job_id, "its delivery reached no live worker"):
                sent.append(job_id)
        return sent

    def _send(self, job_id: str, why: str) -> bool:
        try:
            queue = self.store.get(job_id).spec.priority
            self.send(job_id, queue)
        except JobNotFound:
            self.store.sent(job_id)
            return False
        except Exception:  # noqa: BLE001 - the outbox sweeper sends it after its grace period
            log.exception("could not send job %s back to its queue; the outbox will", job_id)
            return False
        self.store.sent(job_id)
        log.warning("job %s: %s; sent to the %s queue again", job_id, why, queue)
        return True


class LeaseKeeper:
    """One thread per worker: renews its leases every third of the lease period and runs the
    reaper twice as often."""

    def __init__(self, leases: Leases, reaper: Reaper):
        self.leases, self.reaper = leases, reaper
        self.interval = leases.lease_seconds / 6
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LeaseKeeper:
        self._thread = threading.Thread(target=self._run, name="atelier-leases", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(self.interval):
            tick += 1
            try:
                if tick % 2 == 0:
                    for job_id in self.leases.renew():
                        log.warning("job %s: this worker's lease was lost; its attempt stops", job_id)
                self.reaper.reap_once()
            except redis.RedisError as err:
                log.warning("leases: Redis unavailable (%s); retrying", err)
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure
                log.exception("leases: unexpected failure")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
