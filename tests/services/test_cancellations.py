"""A cancel reaches the running job's next step through Redis pub/sub, with no per-step round trip."""

from __future__ import annotations

import time

import pytest

from services.common.jobs import JobSpec, PromptSpec
from services.common.store import JobStore
from services.worker.cancellations import CancelListener
from services.worker.reporting import JobStopped, StoreReporter

pytestmark = pytest.mark.redis


def _wait(predicate, timeout=5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_cancelled_job_stops_at_its_next_step_without_asking_redis(redis_client):
    store = JobStore(redis_client, "t:")
    job_id, _ = store.create("alice", JobSpec(prompts=(PromptSpec("a cat"),), seeds=(1,)))
    other_id, _ = store.create("alice", JobSpec(prompts=(PromptSpec("a dog"),), seeds=(2,)))
    attempt = store.begin_attempt(job_id, "w1", "CPUExecutionProvider")
    listener = CancelListener(redis_client, store.cancel_channel).start()
    try:
        # An hour between ownership checks: only the listener can stop this job in time.
        reporter = StoreReporter(store, job_id, attempt, check_interval_ms=3_600_000,
                                 cancelled=listener.is_cancelled)
        reporter.check()  # the one ownership check at the start
        reporter.check()
        assert store.cancel(job_id, "alice") == ("CANCELLED", True)
        assert _wait(lambda: listener.is_cancelled(job_id))
        with pytest.raises(JobStopped):
            reporter.check()
        assert not listener.is_cancelled(other_id)
    finally:
        listener.stop()


def test_cancelling_a_finished_job_announces_nothing(redis_client):
    store = JobStore(redis_client, "t:")
    job_id, _ = store.create("alice", JobSpec(prompts=(PromptSpec("a cat"),), seeds=(1,)))
    store.cancel(job_id, "alice")
    listener = CancelListener(redis_client, store.cancel_channel).start()
    try:
        assert store.cancel(job_id, "alice") == ("CANCELLED", False)
        time.sleep(0.2)
        assert not listener.is_cancelled(job_id)
    finally:
        listener.stop()
