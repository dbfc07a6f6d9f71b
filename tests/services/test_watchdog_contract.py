"""The hard limit's edges (services/worker/watchdog.py): an attempt exactly at the limit is not
past it, and stopping a watchdog, started or not, ends its thread without an error."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from services.worker.watchdog import HardLimitWatchdog


def test_an_attempt_exactly_at_the_limit_is_not_stuck():
    now = [100.0]
    dog = HardLimitWatchdog(10.0, lambda stuck: None, clock=lambda: now[0])
    with dog.track(SimpleNamespace(job_id="a"), 1):
        now[0] += 10.0
        assert dog.stuck() == []
        now[0] += 0.5
        assert [s.job.job_id for s in dog.stuck()] == ["a"]


def test_stopping_a_watchdog_that_never_started_is_harmless():
    HardLimitWatchdog(10.0, lambda stuck: None).stop()


def test_stop_ends_the_watch_thread_and_nothing_fires_after_it():
    before = set(threading.enumerate())
    fired = threading.Event()
    now = [100.0]
    dog = HardLimitWatchdog(1.0, lambda stuck: fired.set(), interval_seconds=0.01, clock=lambda: now[0]).start()
    (watcher,) = set(threading.enumerate()) - before
    dog.stop()
    assert not watcher.is_alive()
    with dog.track(SimpleNamespace(job_id="a"), 1):
        now[0] += 5.0
        assert not fired.wait(0.2)
