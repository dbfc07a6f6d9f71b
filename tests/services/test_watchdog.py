"""The hard time limit's bookkeeping (services/worker/watchdog.py); the real worker process that
exits on it is tested in test_worker_integration.py."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from services.worker.watchdog import HardLimitWatchdog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(job_id: str):
    return SimpleNamespace(job_id=job_id)


def test_only_attempts_past_the_limit_are_stuck_and_finished_ones_are_forgotten():
    clock = Clock()
    dog = HardLimitWatchdog(10.0, lambda stuck: None, clock=clock)
    with dog.track(job("a"), 1):
        clock.now += 6
        with dog.track(job("b"), 2):
            clock.now += 4.5
            (s,) = dog.stuck()
            assert (s.job.job_id, s.attempt, s.seconds) == ("a", 1, 10.5)
        clock.now += 100
        assert [s.job.job_id for s in dog.stuck()] == ["a"]  # b finished: no longer watched
    assert dog.stuck() == []


def test_the_watch_thread_reports_once_and_stops():
    clock = Clock()
    reported: list = []
    fired = threading.Event()

    def on_expired(stuck):
        reported.append([s.job.job_id for s in stuck])
        fired.set()

    dog = HardLimitWatchdog(1.0, on_expired, interval_seconds=0.01, clock=clock).start()
    with dog.track(job("a"), 1):
        clock.now += 2
        assert fired.wait(5)
        clock.now += 2
        dog._thread.join(timeout=5)
    assert reported == [["a"]] and not dog._thread.is_alive()
    dog.stop()


def test_a_limit_must_be_positive():
    with pytest.raises(ValueError, match="hard time limit must be positive"):
        HardLimitWatchdog(0, lambda stuck: None)
