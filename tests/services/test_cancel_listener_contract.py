"""What the cancel listener (services/worker/cancellations.py) promises a worker: it keeps hearing
cancels while idle and across a Redis restart, stops hearing them once stopped, never blocks
start-up on a Redis that does not answer, remembers an id for an hour, and never keeps a worker
process alive."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis as redis_lib

from services.common.embedded_redis import EmbeddedRedis, free_port
from services.common.jobs import JobSpec, PromptSpec
from services.common.store import JobStore
from services.worker import cancellations
from services.worker.cancellations import FORGET_AFTER_SECONDS, CancelListener
from services.worker.watchdog import HardLimitWatchdog
from tests.services.test_cancellations import _wait as eventually

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def new_job(store: JobStore) -> str:
    return store.create("alice", JobSpec(prompts=(PromptSpec("a cat"),), seeds=(1,)))[0]


def test_a_listener_idle_for_a_while_still_hears_a_cancel(redis_client):
    store = JobStore(redis_client, "t:")
    job_id = new_job(store)
    listener = CancelListener(redis_client, store.cancel_channel).start()
    try:
        time.sleep(1.5)  # several empty polls of the channel
        store.cancel(job_id, "alice")
        assert eventually(lambda: listener.is_cancelled(job_id))
    finally:
        listener.stop()


def test_a_stopped_listener_hears_nothing_more(redis_client):
    store = JobStore(redis_client, "t:")
    job_id = new_job(store)
    listener = CancelListener(redis_client, store.cancel_channel).start()
    listener.stop()
    store.cancel(job_id, "alice")
    time.sleep(0.5)
    assert not listener.is_cancelled(job_id)


def test_the_listener_reconnects_after_redis_restarts():
    port = free_port()
    server = EmbeddedRedis(port=port)
    client = redis_lib.Redis.from_url(server.start())
    store = JobStore(client, "t:")
    listener = CancelListener(client, store.cancel_channel).start()
    try:
        server.stop()
        time.sleep(0.5)  # the listener has lost its connection and waits to retry
        server = EmbeddedRedis(port=port)
        server.start()

        def a_fresh_cancel_is_heard() -> bool:
            job_id = new_job(store)
            store.cancel(job_id, "alice")
            return eventually(lambda: listener.is_cancelled(job_id), timeout=0.3)

        # Pub/sub is best effort: a cancel published while it reconnects is lost, so cancel until one is heard.
        assert eventually(a_fresh_cancel_is_heard)
    finally:
        listener.stop()
        server.stop()


def test_start_returns_when_redis_does_not_answer():
    client = redis_lib.Redis(port=free_port(), socket_connect_timeout=0.2)
    listener = CancelListener(client, "nobody-listens")
    started = threading.Thread(target=listener.start, daemon=True)
    started.start()
    started.join(timeout=30)
    try:
        assert not started.is_alive(), "CancelListener.start() waited forever for a Redis that is down"
    finally:
        listener.stop()


@pytest.fixture
def clock(monkeypatch):
    """The listener's clock (only the listener's), moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(cancellations, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_ids_are_kept_while_at_most_ten_thousand_are_held(clock):
    listener = CancelListener(redis_lib.Redis(), "unused")  # never started: no connection
    for i in range(9_999):
        listener.heard(f"old-{i}")
    clock[0] += FORGET_AFTER_SECONDS + 1
    listener.heard("new")  # 10,000 ids held: none is forgotten, however old
    assert listener.is_cancelled("old-0") and listener.is_cancelled("old-9998") and listener.is_cancelled("new")


def test_past_ten_thousand_ids_those_older_than_an_hour_are_forgotten(clock):
    listener = CancelListener(redis_lib.Redis(), "unused")
    for i in range(9_999):
        listener.heard(f"old-{i}")
    clock[0] += FORGET_AFTER_SECONDS / 2
    listener.heard("recent")
    assert listener.is_cancelled("old-0")  # 10,000 held
    clock[0] += FORGET_AFTER_SECONDS / 2 + 1
    listener.heard("new")  # the 10,001st: those older than an hour go
    assert not listener.is_cancelled("old-0") and not listener.is_cancelled("old-9998")
    assert listener.is_cancelled("recent") and listener.is_cancelled("new")


def test_threads_left_running_never_keep_a_worker_process_alive(redis_url, redis_client):
    # In this process too, so that the test is tied to the code it runs.
    CancelListener(redis_client, "unused").start().stop()
    HardLimitWatchdog(3600, print).start().stop()
    script = (
        "import redis\n"
        "from services.worker.cancellations import CancelListener\n"
        "from services.worker.watchdog import HardLimitWatchdog\n"
        f"CancelListener(redis.Redis.from_url({redis_url!r}), 'unused').start()\n"
        "HardLimitWatchdog(3600, print).start()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=30, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
