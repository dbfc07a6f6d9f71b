"""Webhook deliveries in Redis: which jobs the dispatcher follows, how far it has read each
job's event log, the deliveries waiting to be sent, and the dead letters.

Keys (under `Settings.key_prefix`):

    webhooks:following           zset    ids of the jobs whose events go to webhooks, scored by
                                         creation time; written by the admission script
                                         (:data:`FOLLOW`), left when the job's `finished`
                                         event is fanned out
    webhooks:job:<id>            hash    `cursor`: the last event id fanned out; `p:<endpoint>`:
                                         the time of the last progress event sent there
    webhooks:delivery:<id>       hash    one delivery: endpoint, url, msg_id, body, attempts, ...
    webhooks:due                 zset    delivery ids scored by when to send them next; a claimed
                                         one is pushed a lease ahead, so a dispatcher that dies
                                         mid-send leaves it due again
    webhooks:dead                list    dead letters (JSON), newest first, at most DEAD_LETTERS

Fanning out one job's new events is one script (:data:`_COMMIT`): the deliveries, the new
cursor and the progress times are written together, and only if the cursor is still the one
read, so a dispatcher restarted (or two running) never schedules an event twice; a delivery is
deleted once sent, so sending it again can only follow a dispatcher that died mid-send, with the
same `webhook-id` (at-least-once, docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

from services.common.webhooks.config import Endpoint

DEAD_LETTERS = 1000  # each keeps its body (an inline image up to 256 KiB) to be sent again

# Run by the admission script after it wrote the record (KEYS[1], id ARGV[1], time ARGV[2]): a
# job admitted with webhooks (its `webhooks` field) is followed. The key is derived from
# KEYS[1]'s prefix, as store/history.py's ADD_AND_TRIM does (one Redis, not a cluster).
FOLLOW = """if redis.call('HEXISTS', KEYS[1], 'webhooks') == 1 then
  local store_prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1] - #'job:')
  redis.call('ZADD', store_prefix .. 'webhooks:following', ARGV[2], ARGV[1])
end
"""

# KEYS: 1 the job's state hash, 2 following, 3 due, 4... the new deliveries' hashes.
# ARGV: 1 job id, 2 cursor read ('' for none), 3 new cursor, 4 '1' when the batch ends the job,
#       5 the state's TTL, 6 due time, 7 n, then n (field, value) pairs of the state, then one
#       JSON object per delivery (its fields; `id` is its member of due).
_COMMIT = """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
if (redis.call('HGET', KEYS[1], 'cursor') or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'cursor', ARGV[3])
local n = tonumber(ARGV[7])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 8, 7 + 2 * n)) end
for i = 4, #KEYS do
  local d = cjson.decode(ARGV[7 + 2 * n + i - 3])
  if redis.call('EXISTS', KEYS[i]) == 0 then
    for k, v in pairs(d) do redis.call('HSET', KEYS[i], k, tostring(v)) end
    redis.call('ZADD', KEYS[3], ARGV[6], d.id)
  end
end
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return 1
"""

# KEYS: 1 due. ARGV: 1 now, 2 lease until, 3 at most. The due deliveries, each pushed a lease ahead.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""

# KEYS: 1 the delivery, 2 due, 3 dead. ARGV: 1 id, 2 error, 3 next due time, 4 max attempts,
# 5 now. Replies the attempts made, or 0 when it became a dead letter, -1 when it was gone.
_FAIL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[2], 'last_attempt_at', ARGV[5])
if attempts < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return attempts
end
local flat, d = redis.call('HGETALL', KEYS[1]), {}
for i = 1, #flat, 2 do d[flat[i]] = flat[i + 1] end
d['dead_at'] = ARGV[5]
redis.call('LPUSH', KEYS[3], cjson.encode(d))
redis.call('LTRIM', KEYS[3], 0, """ + str(DEAD_LETTERS - 1) + """)
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 0
"""


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one endpoint."""

    id: str  # "<endpoint id>:<msg_id>"
    msg_id: str  # the `webhook-id`: the same on every attempt, and for every endpoint of the event
    tenant: str
    endpoint: str
    url: str
    job_id: str
    kind: str
    body: str
    attempts: int = 0
    created_at: float = 0.0
    last_error: str = ""

    @classmethod
    def from_hash(cls, fields: dict[bytes, bytes]) -> Delivery:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(f["id"], f["msg_id"], f["tenant"], f["endpoint"], f["url"], f["job_id"], f["kind"], f["body"],
                   int(f.get("attempts", 0)), float(f.get("created_at", 0)), f.get("last_error", ""))


def job_record(endpoint: Endpoint | None) -> str:
    """The `webhooks` field of a job's record: the job's own endpoint, or none. That the field is
    there at all makes the admission script follow the job (:data:`FOLLOW`)."""
    return json.dumps({"job": {**asdict(endpoint), "events": list(endpoint.events)} if endpoint else None},
                      sort_keys=True)


def job_endpoint(field: bytes | str | None) -> Endpoint | None:
    """The job's own endpoint from its record's `webhooks` field."""
    own = json.loads(field)["job"] if field else None
    return Endpoint(**own) if own else None


def msg_id(job_id: str, event_id: str) -> str:
    """An event's `webhook-id`: derived from the job and the event, so every attempt carries the same."""
    return f"evt_{job_id}_{event_id}"


class WebhookStore:
    """Reads and writes of the keys above. Thread-safe (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, prefix: str = "atelier:"):
        self.client, self.prefix = client, prefix
        self._commit = client.register_script(_COMMIT)
        self._claim = client.register_script(_CLAIM)
        self._fail = client.register_script(_FAIL)

    @property
    def following_key(self) -> str:
        return f"{self.prefix}webhooks:following"

    @property
    def due_key(self) -> str:
        return f"{self.prefix}webhooks:due"

    @property
    def dead_key(self) -> str:
        return f"{self.prefix}webhooks:dead"

    def state_key(self, job_id: str) -> str:
        return f"{self.prefix}webhooks:job:{job_id}"

    def delivery_key(self, delivery_id: str) -> str:
        return f"{self.prefix}webhooks:delivery:{delivery_id}"

    # --- fanning out

    def following(self, limit: int, offset: int = 0) -> list[str]:
        """Up to `limit` followed jobs from the `offset`-th oldest."""
        if limit <= 0:
            return []
        return [m.decode() for m in self.client.zrange(self.following_key, offset, offset + limit - 1)]

    def following_count(self) -> int:
        return int(self.client.zcard(self.following_key))

    def states(self, job_ids: list[str]) -> list[dict[str, str]]:
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.state_key(job_id))
        return [{k.decode(): v.decode() for k, v in h.items()} for h in pipe.execute()]

    def unfollow(self, job_id: str) -> None:
        self.client.zrem(self.following_key, job_id)

    def commit(self, job_id: str, cursor: str, new_cursor: str, ends_job: bool, state_ttl: int, now: float,
               state: dict[str, str], deliveries: list[Delivery]) -> bool:
        """Schedule `deliveries` and move the job's cursor, if it is still `cursor`; False if not."""
        args: list = [job_id, cursor, new_cursor, "1" if ends_job else "0", int(state_ttl), repr(now), len(state)]
        for name, value in state.items():
            args += [name, value]
        args += [json.dumps(asdict(d)) for d in deliveries]
        keys = [self.state_key(job_id), self.following_key, self.due_key,
                *(self.delivery_key(d.id) for d in deliveries)]
        return bool(self._commit(keys=keys, args=args))

    # --- sending

    def claim(self, now: float, lease_seconds: float, count: int) -> list[Delivery]:
        """Up to `count` due deliveries, each held for `lease_seconds` (then due again unless settled)."""
        ids = self._claim(keys=[self.due_key], args=[repr(now), repr(now + lease_seconds), int(count)])
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.delivery_key(i.decode()))
        found = []
        for i, fields in zip(ids, pipe.execute(), strict=True):
            if fields:
                found.append(Delivery.from_hash(fields))
            else:  # settled by a dispatcher that held it before
                self.client.zrem(self.due_key, i)
        return found

    def delivered(self, delivery: Delivery) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.delivery_key(delivery.id))
        pipe.zrem(self.due_key, delivery.id)
        pipe.execute()

    def failed(self, delivery: Delivery, error: str, retry_at: float, max_attempts: int, now: float) -> int:
        """Count a failed attempt: the attempts made (due again at `retry_at`), 0 if it became a dead
        letter, -1 if it was already settled."""
        return int(self._fail(keys=[self.delivery_key(delivery.id), self.due_key, self.dead_key],
                              args=[delivery.id, error[:500], repr(retry_at), int(max_attempts), repr(now)]))

    def pending(self) -> int:
        return int(self.client.zcard(self.due_key))

    # --- dead letters

    def dead_letters(self, limit: int = 100) -> list[dict]:
        return [json.loads(x) for x in self.client.lrange(self.dead_key, 0, limit - 1)]

    def redeliver(self, delivery_id: str, now: float) -> bool:
        """Send a dead letter again (its attempts start over); False if there is none by that id."""
        for raw in self.client.lrange(self.dead_key, 0, -1):
            d = json.loads(raw)
            if d.get("id") != delivery_id:
                continue
            d.pop("dead_at", None)
            d.update(attempts=0, last_error="")
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.delivery_key(delivery_id), mapping={k: str(v) for k, v in d.items()})
            pipe.zadd(self.due_key, {delivery_id: now})
            pipe.lrem(self.dead_key, 1, raw)
            pipe.execute()
            return True
        return False
