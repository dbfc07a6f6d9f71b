"""A Redis database for a benchmark, next to test runs on the same server.

On the shared 127.0.0.1:6379 it takes an empty database (14 first) under the same lock the
test harness uses (tests/redis_harness.py: `atelier-test:db-lock:<db>` in database 0), so a
test run never picks it meanwhile; afterwards it deletes only the keys under its own prefix.
Where no Redis answers, it runs an embedded redis-server instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from services.common.embedded_redis import EmbeddedRedis, redis_answers

SYSTEM_URL = "redis://127.0.0.1:6379"
PREFERRED_DBS = (14, 15, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
LOCK_SECONDS = 3600


@contextmanager
def bench_redis(prefix: str, base_url: str = SYSTEM_URL) -> Iterator[str]:
    """Yields a Redis URL; every key under `prefix` on it is deleted at the end."""
    if not redis_answers(f"{base_url}/0"):
        with EmbeddedRedis() as url:
            yield url
        return
    admin = redis.Redis.from_url(f"{base_url}/0")
    token = f"bench:{os.getpid()}@{os.uname().nodename}"
    chosen = None
    for db in PREFERRED_DBS:
        if not admin.set(f"atelier-test:db-lock:{db}", token, nx=True, ex=LOCK_SECONDS):
            continue
        client = redis.Redis.from_url(f"{base_url}/{db}")
        if client.dbsize() == 0:     # someone's keys without a lock: leave that database alone
            chosen = db
            client.close()
            break
        client.close()
        admin.delete(f"atelier-test:db-lock:{db}")
    if chosen is None:
        admin.close()
        raise RuntimeError(f"no free, empty database on {base_url}")
    url = f"{base_url}/{chosen}"
    try:
        yield url
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
        if admin.get(f"atelier-test:db-lock:{chosen}") == token.encode():
            admin.delete(f"atelier-test:db-lock:{chosen}")
        admin.close()
