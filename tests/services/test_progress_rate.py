"""Progress events at most one an interval, but never the count of an image made (issue 19): a
step alone waits for the interval, an image or a shard written is told at once, so the attempt's
last progress event (the report after its last image) always reaches the log, after its artifact."""

from __future__ import annotations

import pytest

from services.common.events import EventKind
from services.common.jobs import JobState
from services.common.settings import Settings
from services.worker.executor import JobExecutor
from tests.services import test_pipeline
from tests.services.test_reporting import Clock, FakeStore, reporter

store, models = test_pipeline.store, test_pipeline.models  # a real Redis store, the toy model's registry


def test_steps_within_the_interval_wait_but_an_image_made_is_written_at_once():
    fake, clock = FakeStore(), Clock()
    r = reporter(fake, clock, progress_interval_ms=100)
    r.progress(0, 4, 0)  # the first: written
    for step in range(1, 5):  # four 5 ms steps, the last one included
        clock.now += 0.005
        r.progress(step, 4, 0)
    assert fake.events == 1
    clock.now += 0.003
    r.progress(4, 4, 1)  # the report after the image: written however soon
    assert fake.events == 2
    clock.now += 0.001
    r.progress(4, 4, 1)  # nothing new: waits for the interval
    assert fake.events == 2
    clock.now += 0.1
    r.progress(4, 4, 1)
    assert fake.events == 3


def test_a_shard_written_is_told_at_once():
    fake, clock = FakeStore(), Clock()
    r = reporter(fake, clock, progress_interval_ms=100)
    r.progress(0, 8, 0, shards=(0, 2))
    clock.now += 0.001
    r.progress(4, 8, 0, shards=(1, 2))
    assert fake.events == 2


@pytest.mark.redis
def test_a_job_s_log_ends_with_each_image_then_its_count_with_fewer_events_than_steps(store, models):
    settings = Settings.from_env({}, default_model="toy", progress_interval_ms=100_000, max_batch=2)
    executor = JobExecutor(store, models, settings, name="test-worker")
    job_id = test_pipeline.submit(store, seeds=(1, 2, 3), steps=12)  # chunks of one image (guided: 2 rows)
    assert executor.run(job_id) == JobState.SUCCEEDED
    events = store.read_events(job_id)
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "finished"
    # The first progress, then per image: its artifact and the count that includes it; no step in between
    # (the interval is far longer than the job).
    assert kinds[2:-1] == ["progress"] + ["artifact", "progress"] * 3
    counts = [(e.data["step"], e.data["images_done"]) for e in events if e.kind == EventKind.PROGRESS]
    assert counts == [(0, 0), (12, 1), (24, 2), (36, 3)]
    assert events[-1].data["images"] == 3
    record = store.get(job_id)
    assert (record.steps_done, record.steps_total, record.images_done) == (36, 36, 3)
