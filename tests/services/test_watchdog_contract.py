"""The hard limit's edges (services/worker/watchdog.py): an attempt exactly at the limit is not
past it, a restart (a dataset job's next shard) counts the limit from then for that attempt alone,
and stopping a watchdog, started or not, ends its thread without an error."""

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


def test_a_restarted_attempt_counts_its_limit_from_the_restart_and_only_that_attempt():
    # A dataset job's limit holds per shard (services/worker/executor.py restarts it as each shard begins).
    now = [100.0]
    dog = HardLimitWatchdog(10.0, lambda stuck: None, clock=lambda: now[0])
    first, second = SimpleNamespace(job_id="a"), SimpleNamespace(job_id="b")
    with dog.track(first, 1), dog.track(second, 1):
        now[0] += 8.0
        dog.restart(first, 1)
        dog.restart(SimpleNamespace(job_id="b"), 2)  # another attempt of b: b's running one keeps its start
        now[0] += 2.5
        (stuck,) = dog.stuck()
        assert (stuck.job, stuck.attempt, stuck.seconds) == (second, 1, 10.5)
        now[0] += 8.0
        assert [(s.job, s.attempt, s.seconds) for s in dog.stuck()] == [(first, 1, 10.5), (second, 1, 18.5)]


def test_restarting_an_attempt_that_is_not_running_watches_nothing():
    now = [100.0]
    dog = HardLimitWatchdog(10.0, lambda stuck: None, clock=lambda: now[0])
    with dog.track(SimpleNamespace(job_id="a"), 1):
        pass
    dog.restart(SimpleNamespace(job_id="a"), 1)  # a shard beginning as its attempt ends
    now[0] += 60.0
    assert dog.stuck() == []
