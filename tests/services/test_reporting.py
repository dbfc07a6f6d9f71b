"""StoreReporter: how often it asks the job store whether the job may go on."""

from __future__ import annotations

import pytest

from services.worker.reporting import JobStopped, StoreReporter


class FakeStore:
    def __init__(self):
        self.running = True
        self.asked = 0
        self.events = 0

    def still_running(self, job_id, attempt):
        self.asked += 1
        return self.running

    def append_event(self, job_id, attempt, kind, data, blob=None, updates=None):
        self.events += 1
        return "1-0" if self.running else None


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def reporter(store, clock, **kwargs) -> StoreReporter:
    return StoreReporter(store, "job", 1, clock=clock, **kwargs)


def test_without_an_interval_every_check_asks_the_store():
    store, clock = FakeStore(), Clock()
    r = reporter(store, clock)
    for _ in range(5):
        r.check()
        clock.now += 0.001
    assert store.asked == 5


def test_checks_within_the_interval_are_answered_locally():
    store, clock = FakeStore(), Clock()
    r = reporter(store, clock, check_interval_ms=100)
    for _ in range(10):  # ten 5 ms steps: one question at the start, one after 100 ms
        r.check()
        clock.now += 0.005
    assert store.asked == 1
    clock.now += 0.06
    r.check()
    assert store.asked == 2


def test_a_progress_event_written_confirms_the_job_is_still_ours():
    store, clock = FakeStore(), Clock()
    r = reporter(store, clock, check_interval_ms=100, progress_interval_ms=100)
    r.progress(1, 10, 0)
    clock.now += 0.05
    r.check()
    assert store.asked == 0 and store.events == 1


def test_a_cancelled_job_stops_at_the_first_check_after_the_interval():
    store, clock = FakeStore(), Clock()
    r = reporter(store, clock, check_interval_ms=100)
    r.check()
    store.running = False  # cancelled
    clock.now += 0.05
    r.check()  # not asked yet
    clock.now += 0.06
    with pytest.raises(JobStopped):
        r.check()


def test_a_reporter_made_just_after_begin_attempt_need_not_ask_at_once():
    store, clock = FakeStore(), Clock()
    r = reporter(store, clock, check_interval_ms=100, confirmed_at=clock.now)
    r.check()
    assert store.asked == 0
    clock.now += 0.1
    r.check()
    assert store.asked == 1
