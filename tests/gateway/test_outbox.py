"""No accepted job is stranded: jobs stored but never sent reach the broker through the outbox."""

import threading

import pytest

from services.common.jobs import JobSpec, JobState, PromptSpec
from services.common.store import JobStore
from services.gateway.outbox import OutboxSweeper

pytestmark = pytest.mark.redis


class Sent(list):
    def __call__(self, job_id: str, queue: str) -> None:
        self.append((job_id, queue))


def _spec(**kw) -> JobSpec:
    return JobSpec(prompts=(PromptSpec("a red heart"),), seeds=(1,), **kw)


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client, "t:")


def test_a_job_whose_gateway_died_before_sending_is_sent_once_after_the_grace(store):
    # The gateway stored the job, then died before enqueueing it.
    job_id, _ = store.create("alice", _spec(priority="batch"), now=1000.0)
    sent = Sent()
    sweeper = OutboxSweeper(store, sent, grace_seconds=30)
    assert sweeper.sweep_once(now=1010.0) == []  # still within the grace: its gateway may be sending
    assert sweeper.sweep_once(now=1031.0) == [job_id]
    assert sent == [(job_id, "batch")]
    assert sweeper.sweep_once(now=2000.0) == [] and len(sent) == 1


def test_jobs_sent_normally_leave_the_outbox(store):
    job_id, _ = store.create("alice", _spec(), now=1000.0)
    assert store.sent(job_id)
    assert store.unsent(0, now=5000.0) == []


def test_cancelled_jobs_are_dropped_not_sent(store):
    job_id, _ = store.create("alice", _spec(), now=1000.0)
    store.cancel(job_id, "alice")
    sent = Sent()
    assert OutboxSweeper(store, sent, grace_seconds=30).sweep_once(now=1100.0) == []
    assert sent == [] and store.unsent(0, now=5000.0) == []
    assert store.get(job_id).state == JobState.CANCELLED


def test_racing_sweepers_send_each_job_once(store):
    ids = [store.create("alice", _spec(), now=1000.0)[0] for _ in range(20)]
    sent = Sent()
    sweepers = [OutboxSweeper(store, sent, grace_seconds=30) for _ in range(4)]
    threads = [threading.Thread(target=s.sweep_once, kwargs={"now": 1100.0}) for s in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert sorted(j for j, _ in sent) == sorted(ids)


def test_a_failed_send_is_retried_after_its_lease(store):
    job_id, _ = store.create("alice", _spec(), now=1000.0)

    def broker_down(job_id, queue):
        raise ConnectionError("broker away")

    assert OutboxSweeper(store, broker_down, grace_seconds=30).sweep_once(now=1100.0) == []
    sent = Sent()
    sweeper = OutboxSweeper(store, sent, grace_seconds=30)
    assert sweeper.sweep_once(now=1110.0) == []  # leased at 1100 by the failed sweep
    assert sweeper.sweep_once(now=1131.0) == [job_id]


def test_submit_through_the_gateway_leaves_nothing_in_the_outbox(stack):
    from tests.gateway.helpers import Stubs, auth, request

    handle = Stubs(stack.address).gen.Submit(request(), metadata=auth(stack.keys.alice))
    store = stack.gateway.jobs.store
    assert store.get(handle.job_id).state == JobState.QUEUED
    assert store.unsent(0, now=1e12) == []
