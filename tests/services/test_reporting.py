"""StoreReporter: how often it asks the job store whether the job may go on."""

from __future__ import annotations

import pytest

from services.common.events import EventKind
from services.common.jobs import JobSpec, PromptSpec
from services.common.store import JobStore
from services.worker.reporting import JobStopped, StoreReporter


class FakeStore:
    def __init__(self):
        self.running = True
        self.asked = 0
        self.events = 0

    def still_running(self, job_id, attempt):
        self.asked += 1
        return self.running

    def append_event(self, job_id, attempt, payload, blob=None, updates=None):
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


@pytest.mark.redis
def test_progress_reports_the_time_left_at_the_rate_so_far(redis_client):
    store, clock = JobStore(redis_client, "t:"), Clock()
    job_id, _ = store.create("acme", JobSpec(prompts=(PromptSpec("a cat"),), seeds=(1,)))
    r = StoreReporter(store, job_id, store.begin_attempt(job_id, "w1"), clock=clock, progress_interval_ms=0)
    r.progress(0, 10, 0)       # no step done yet: no rate to go by
    clock.now += 4.0
    r.progress(2, 10, 0)       # 2 steps in 4 s: the 8 left take 16 s
    clock.now += 2.0
    r.progress(5, 10, 0)       # 5 in 6 s: 5 left, 6 s
    clock.now += 6.0
    r.progress(10, 10, 1)
    progress = [e.data for e in store.read_events(job_id) if e.kind == EventKind.PROGRESS]
    assert [(p["step"], p["eta_seconds"]) for p in progress] == [(0, 0.0), (2, 16.0), (5, 6.0), (10, 0.0)]
    assert store.get(job_id).steps_done == 10
