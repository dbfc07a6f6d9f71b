"""The job store on a real Redis: state machine, idempotency, event log, artifacts, TTLs."""

from __future__ import annotations

import threading
import time

import pytest

from services.common import events as ev
from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobSpec, JobState, PromptSpec
from services.common.store import JobNotFound, JobStore

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix="t:", result_ttl_seconds=60)


def spec(**changes) -> JobSpec:
    base = JobSpec(prompts=(PromptSpec("a red apple"),), seeds=(1, 2), steps=4, sampler="euler")
    return base.with_(**changes)


def test_create_stores_a_queued_job_with_its_queued_event(store, redis_client):
    job_id, created = store.create("acme", spec(init_image=b"\x89PNG..."), steps_total=8, queue_position=3)
    assert created
    job = store.get(job_id)
    assert job.state == JobState.QUEUED and job.tenant == "acme" and job.steps_total == 8
    assert job.spec == spec(init_image=b"\x89PNG...") and job.spec.init_image == b"\x89PNG..."
    assert job.images_total == 2
    (event,) = store.read_events(job_id)
    assert event.kind == EventKind.QUEUED and event.data == {"position": 3, "eta_seconds": 0.0, "queue": "interactive"}
    assert job.last_event_id == event.id
    assert store.in_flight("acme") == {job_id}
    assert all(k.startswith(b"t:") for k in redis_client.keys("*"))


def test_other_tenants_do_not_see_a_job(store):
    job_id, _ = store.create("acme", spec())
    with pytest.raises(JobNotFound):
        store.get(job_id, tenant="globex")
    with pytest.raises(JobNotFound):
        store.get("nope")


def test_same_request_id_returns_the_existing_job(store):
    first, created = store.create("acme", spec(request_id="r1"))
    again, created_again = store.create("acme", spec(request_id="r1"))
    other, _ = store.create("globex", spec(request_id="r1"))
    assert created and not created_again and again == first and other != first
    assert store.find_request("acme", "r1") == first


def test_the_started_event_carries_the_attempt_and_the_time_in_queue(store):
    job_id, _ = store.create("acme", spec(), now=1000.0)
    assert store.begin_attempt(job_id, "w1", "CPUExecutionProvider", now=1002.5) == 1
    started = store.read_events(job_id)[1]
    assert started.kind == "started" and started.data["attempt"] == 1
    assert started.data["queued_for_seconds"] == pytest.approx(2.5)
    assert started.data["worker"] == "w1" and started.data["execution_provider"] == "CPUExecutionProvider"
    assert store.begin_attempt("no-such-job", "w1") is None


def test_finish_with_the_record_in_hand_reads_nothing_more(store, redis_client, monkeypatch):
    job_id, _ = store.create("acme", spec(request_id="r"))
    store.begin_attempt(job_id, "w1")
    record = store.get(job_id)
    monkeypatch.setattr(store, "get", lambda *a, **k: pytest.fail("finish read the record again"))
    assert store.finish(job_id, 1, JobState.SUCCEEDED, record=record)
    assert redis_client.scard(store.inflight_key("acme")) == 0
    # The idempotency key outlives the job's end by the result TTL, not forever and not less.
    assert store.result_ttl_seconds - 5 <= redis_client.ttl(store.request_key("acme", "r")) <= store.result_ttl_seconds


def test_a_job_runs_to_success_and_its_keys_expire(store, redis_client):
    job_id, _ = store.create("acme", spec(request_id="r"))
    attempt = store.begin_attempt(job_id, "w1", "CPUExecutionProvider")
    assert attempt == 1 and store.still_running(job_id, 1)
    assert store.append_event(job_id, 1, ev.Progress(step=1), updates={"steps_done": 1})
    assert store.append_event(job_id, 1, ev.Preview(index=0), blob=b"jpeg")
    assert store.add_artifact(job_id, 1, ev.Artifact(index=0, seed=1), b"png0")
    assert store.add_artifact(job_id, 1, ev.Artifact(index=0, seed=1), b"png0-again") is None  # once per index
    assert store.finish(job_id, 1, JobState.SUCCEEDED)
    assert not store.finish(job_id, 1, JobState.FAILED)  # already final
    job = store.get(job_id)
    assert job.state == JobState.SUCCEEDED and job.steps_done == 1 and job.images_done == 1
    kinds = [e.kind for e in store.read_events(job_id)]
    assert kinds == ["queued", "started", "progress", "preview", "artifact", "finished"]
    events = store.read_events(job_id)
    assert events[1].data["attempt"] == 1 and events[1].data["execution_provider"] == "CPUExecutionProvider"
    assert events[3].blob == b"jpeg" and events[4].blob == b"png0"
    assert events[5].data["state"] == "SUCCEEDED" and events[5].data["images"] == 1
    assert store.in_flight("acme") == set()
    for key in (store.job_key(job_id), store.events_key(job_id), store.artifacts_key(job_id),
                store.request_key("acme", "r")):
        assert 0 < redis_client.ttl(key) <= 60


def test_nothing_is_appended_after_the_finished_event(store):
    job_id, _ = store.create("acme", spec())
    store.begin_attempt(job_id, "w1")
    assert store.cancel(job_id) == (JobState.CANCELLED, True)
    assert not store.still_running(job_id, 1)
    assert store.append_event(job_id, 1, ev.Progress(step=2)) is None
    assert store.add_artifact(job_id, 1, ev.Artifact(index=0), b"x") is None
    assert not store.finish(job_id, 1, JobState.SUCCEEDED)
    assert store.read_events(job_id)[-1].kind == EventKind.FINISHED
    assert store.cancel(job_id) == (JobState.CANCELLED, False)


def test_a_redelivered_job_fences_off_the_lost_attempt(store):
    job_id, _ = store.create("acme", spec())
    assert store.begin_attempt(job_id, "w1") == 1
    assert store.add_artifact(job_id, 1, ev.Artifact(index=0), b"a")
    assert store.begin_attempt(job_id, "w2") == 2  # the worker of attempt 1 was lost
    assert not store.still_running(job_id, 1)
    assert store.add_artifact(job_id, 1, ev.Artifact(index=1), b"b") is None
    assert not store.finish(job_id, 1, JobState.SUCCEEDED)
    assert store.artifact_indices(job_id) == {0}
    assert store.add_artifact(job_id, 2, ev.Artifact(index=1), b"b")
    assert store.finish(job_id, 2, JobState.SUCCEEDED)
    assert store.begin_attempt(job_id, "w3") is None


def test_concurrent_finishers_produce_one_result(store):
    job_id, _ = store.create("acme", spec())
    store.begin_attempt(job_id, "w1")
    results = []
    barrier = threading.Barrier(8)

    def race(state):
        barrier.wait(timeout=20)
        results.append(store.finish(job_id, 1, state))

    threads = [threading.Thread(target=race, args=(s,)) for s in [JobState.SUCCEEDED, JobState.FAILED] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert results.count(True) == 1
    assert [e.kind for e in store.read_events(job_id)].count(EventKind.FINISHED) == 1


def test_expire_and_fail_carry_their_reason(store):
    a, _ = store.create("acme", spec())
    assert store.expire(a)
    assert store.get(a).state == JobState.EXPIRED
    b, _ = store.create("acme", spec())
    store.begin_attempt(b, "w")
    assert store.finish(b, 1, JobState.FAILED, ErrorCode.NUMERICAL, "NaN in image 0")
    job = store.get(b)
    assert (job.error_code, job.error_message) == ("NUMERICAL", "NaN in image 0")
    finished = store.read_events(b)[-1].data
    assert finished["error_code"] == "NUMERICAL" and finished["error_message"] == "NaN in image 0"


def test_read_events_resumes_after_any_id(store):
    job_id, _ = store.create("acme", spec())
    store.begin_attempt(job_id, "w")
    for step in range(5):
        store.append_event(job_id, 1, ev.Progress(step=step))
    everything = store.read_events(job_id)
    assert store.read_events(job_id, after=everything[2].id) == everything[3:]
    assert store.read_events(job_id, after="0") == everything


def test_follow_events_blocks_until_new_events_and_ends_after_finished(store):
    job_id, _ = store.create("acme", spec())

    def work():
        time.sleep(0.2)
        store.begin_attempt(job_id, "w")
        store.append_event(job_id, 1, ev.Progress(step=1))
        time.sleep(0.2)
        store.finish(job_id, 1, JobState.SUCCEEDED)

    worker = threading.Thread(target=work)
    worker.start()
    seen = [e.kind for e in store.follow_events(job_id, block_ms=100, timeout=10)]
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert seen == ["queued", "started", "progress", "finished"]
    first = store.read_events(job_id)[0]
    assert [e.kind for e in store.follow_events(job_id, after=first.id, timeout=10)] == [
        "started", "progress", "finished"]


def test_follow_events_of_an_unknown_job_raises(store):
    with pytest.raises(JobNotFound):
        next(store.follow_events("nope", block_ms=10, timeout=5))
