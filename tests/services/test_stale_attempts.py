"""Once attempt 2 of a job has begun, nothing attempt 1 writes reaches a reader: not progress,
not a preview, not an image, not an outcome (a worker presumed lost may still be running).
"""

from __future__ import annotations

import inspect
import threading
import time

import pytest

from services.common import events as ev
from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobSpec, JobState, PromptSpec
from services.common.settings import Settings
from services.common.shards import shard_info
from services.common.store import JobStore
from services.worker.executor import JobExecutor
from services.worker.models import ModelRegistry
from services.worker.reporting import JobStopped, StoreReporter
from tests.services import toy_runtime

pytestmark = pytest.mark.redis

# Every write the store offers a worker, made as attempt `a`; each returns what the store answered.
WRITES = {
    "progress": lambda s, j, a: s.append_event(j, a, ev.Progress(5, 10, 1.0, 0),
                                              updates={"steps_done": 5, "steps_total": 10}),
    "preview": lambda s, j, a: s.append_event(j, a, ev.Preview(8, 8, 0, 5), blob=b"jpeg"),
    "artifact": lambda s, j, a: s.add_artifact(j, a, ev.Artifact(index=0, seed=1), b"image of attempt"),
    "finish succeeded": lambda s, j, a: s.finish(j, a, JobState.SUCCEEDED),
    "finish failed": lambda s, j, a: s.finish(j, a, JobState.FAILED, ErrorCode.INTERNAL, "boom"),
    "finish expired": lambda s, j, a: s.finish(j, a, JobState.EXPIRED),
    "dataset shard": lambda s, j, a: s.add_shard(j, a, shard_info(0, b"shard of attempt", 5, a)),
}
# Store methods that take an attempt and write; a new one must join WRITES above.
WRITE_METHODS = {"append_event", "add_artifact", "finish", "add_shard"}
READ_METHODS = {"still_running"}


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix="t:")


def new_job(store: JobStore, **changes) -> str:
    spec = JobSpec(prompts=(PromptSpec("a cat"),), seeds=(1, 2), output_format="raw_rgba8").with_(**changes)
    return store.create("acme", toy_runtime.planned(spec))[0]


def test_every_attempt_carrying_method_of_the_store_is_covered():
    takes_attempt = {name for name, fn in inspect.getmembers(JobStore, inspect.isfunction)
                     if not name.startswith("_") and "attempt" in inspect.signature(fn).parameters}
    assert takes_attempt == WRITE_METHODS | READ_METHODS


@pytest.mark.parametrize("write", list(WRITES))
def test_a_superseded_attempt_s_write_is_refused_and_invisible(store, write):
    job_id = new_job(store)
    first = store.begin_attempt(job_id, "presumed-lost")
    assert WRITES["progress"](store, job_id, first)  # attempt 1 did write while it owned the job
    second = store.begin_attempt(job_id, "w2")
    assert (first, second) == (1, 2)
    before = store.read_events(job_id)

    assert not WRITES[write](store, job_id, first)

    assert store.read_events(job_id) == before
    job = store.get(job_id)
    assert (job.state, job.attempt, job.images_done, job.error_code) == (JobState.RUNNING, 2, 0, "")
    assert job.steps_done == 5  # as attempt 1 left it before attempt 2 began
    assert store.artifact_indices(job_id) == set() and store.artifact_bytes(job_id, 0) is None
    assert not store.still_running(job_id, first) and store.still_running(job_id, second)
    # The same write is the current attempt's to make.
    assert WRITES[write](store, job_id, second)


def test_a_superseded_reporter_stops_at_its_first_write(store):
    job_id = new_job(store)
    first = store.begin_attempt(job_id, "presumed-lost")
    # An hour between ownership checks: only the refused writes can tell this reporter.
    stale = StoreReporter(store, job_id, first, progress_interval_ms=0, check_interval_ms=3_600_000,
                          confirmed_at=time.time())
    store.begin_attempt(job_id, "w2")
    stale.check()
    for write in (lambda: stale.progress(3, 10, 0), lambda: stale.preview(0, 3, b"jpeg", 8, 8),
                  lambda: stale.artifact(ev.Artifact(index=0, seed=1), b"image")):
        with pytest.raises(JobStopped):
            write()
    assert [e.kind for e in store.read_events(job_id)] == ["queued", "started", "started"]


def test_a_running_attempt_taken_over_writes_nothing_after_the_takeover(store, monkeypatch):
    """A real executor runs attempt 1 while another worker begins attempt 2 (the first was presumed
    lost). Ownership is asked of Redis once a second, so the previews written every step are what
    must be refused."""
    monkeypatch.setenv("ATELIER_TOY_CALL_SECONDS", "0.01")
    registry = ModelRegistry(lambda m, v: toy_runtime.load(None, m, v), wait_ms=0)
    settings = Settings.from_env({}, default_model="toy", progress_interval_ms=1000)
    executor = JobExecutor(store, registry, settings, name="presumed-lost")
    job_id = new_job(store, steps=300, guidance_scale=1.0, preview_every_steps=1)
    runner = threading.Thread(target=executor.run, args=(job_id,), daemon=True)
    try:
        runner.start()
        deadline = time.monotonic() + 20
        while not [e for e in store.read_events(job_id) if e.kind == EventKind.PREVIEW]:
            assert time.monotonic() < deadline, "attempt 1 wrote no preview"
            time.sleep(0.01)
        assert store.begin_attempt(job_id, "w2") == 2
        runner.join(timeout=20)
        assert not runner.is_alive(), "attempt 1 did not stop"
    finally:
        registry.close()
    events = store.read_events(job_id)
    takeover = max(i for i, e in enumerate(events) if e.kind == EventKind.STARTED)
    assert events[takeover].data["attempt"] == 2
    assert [e.kind for e in events[takeover + 1:]] == [], "attempt 1 wrote after attempt 2 began"
    job = store.get(job_id)
    assert (job.state, job.attempt, job.images_done) == (JobState.RUNNING, 2, 0)
