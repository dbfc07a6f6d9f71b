"""The worker's settings reach the job (services/worker/executor.py), in process on the real job
store: rows per chunk, preview size, the upload limit; an attempt's first ETA counts only the
images it has left (a dataset job's: those of the shards not yet written); a redelivered job samples
only those; a superseded attempt that meets its deadline or time limit ends nothing."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from services.common import cost
from services.common import events as ev
from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobSpec, JobState, PromptSpec
from services.common.settings import Settings
from services.common.shards import shard_info
from services.worker.executor import JobExecutor
from services.worker.models import ModelRegistry
from tests.services import test_dataset_jobs, toy_runtime
from tests.services.test_pipeline import encoded, models, raw_images, spec, store, submit  # noqa: F401 - fixtures

pytestmark = pytest.mark.redis


def executor_with(store, models, **settings) -> JobExecutor:  # noqa: F811 - the fixtures
    values = dict(default_model="toy", progress_interval_ms=0) | settings
    return JobExecutor(store, models, Settings.from_env({}, **values), name="test-worker")


def png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (side, side), (10, 200, 30, 255)).save(buf, "PNG")
    return buf.getvalue()


def test_max_batch_rows_make_a_chunk_whose_images_are_sent_before_the_next_is_sampled(store, models):  # noqa: F811
    job_id = submit(store, seeds=(1, 2), steps=3)  # guided: two rows an image, so one image a chunk
    assert executor_with(store, models, max_batch=2).run(job_id) == JobState.SUCCEEDED
    events = store.read_events(job_id)
    first_image = next(i for i, e in enumerate(events) if e.kind == EventKind.ARTIFACT)
    sampled_after = [e.data["step"] for e in events[first_image:] if e.kind == EventKind.PROGRESS]
    assert sampled_after[:4] == [3, 4, 5, 6]  # image 1's steps come after image 0 was sent


def test_previews_are_the_worker_s_preview_size(store, models):  # noqa: F811
    job_id = submit(store, steps=4, preview_every_steps=2)
    assert executor_with(store, models, preview_size=8).run(job_id) == JobState.SUCCEEDED
    previews = [e.data for e in store.read_events(job_id) if e.kind == EventKind.PREVIEW]
    assert [(p["width"], p["height"]) for p in previews] == [(8, 8)]


def test_an_upload_over_the_worker_s_pixel_limit_fails_the_job_as_invalid(store, models):  # noqa: F811
    job_id = submit(store, init_image=png(16), strength=0.5, steps=2)
    assert executor_with(store, models, max_upload_pixels=100).run(job_id) == JobState.FAILED
    record = store.get(job_id)
    assert record.error_code == ErrorCode.INVALID_INPUT and "256" in record.error_message
    allowed = submit(store, init_image=png(16), strength=0.5, steps=2)
    assert executor_with(store, models, max_upload_pixels=256).run(allowed) == JobState.SUCCEEDED


def redelivered(store, seeds: tuple[int, ...], made: int) -> str:  # noqa: F811
    """A job whose lost first attempt stored its first `made` images."""
    job_id = submit(store, seeds=seeds, steps=3)
    attempt = store.begin_attempt(job_id, "lost-worker")
    for index in range(made):
        store.add_artifact(job_id, attempt, ev.Artifact(index=index, seed=seeds[index]), b"from the lost worker")
    return job_id


def test_an_attempt_s_first_eta_is_the_estimate_of_the_images_it_has_left(store, models):  # noqa: F811
    executor = executor_with(store, models)
    job_id = redelivered(store, (1, 2, 3, 4), made=3)
    plan = store.get(job_id).spec.plan
    executor.row_times.record(cost.of_plan(plan), 10.0, 6.0)  # a measured job of 4 images
    measured = executor.row_times.snapshot()
    assert executor.run(job_id) == JobState.SUCCEEDED
    first = next(e.data for e in store.read_events(job_id) if e.kind == EventKind.PROGRESS)
    assert first["step"] == 0
    assert first["eta_seconds"] == pytest.approx(cost.estimate_plan(plan, measured, 1))
    assert cost.estimate_plan(plan, measured, 1) != pytest.approx(cost.estimate_plan(plan, measured, 4))


def test_a_dataset_job_s_later_attempt_estimates_only_the_shards_it_has_left(store, models, tmp_path):  # noqa: F811
    # 12 images in shards of 5: the lost first attempt recorded shard 0, so 7 images are left.
    spec_ = toy_runtime.planned(test_dataset_jobs.dataset_spec("resumed"))
    job_id = store.create("acme", spec_)[0]
    lost = store.begin_attempt(job_id, "lost-worker")
    assert store.add_shard(job_id, lost, shard_info(0, b"the lost worker's shard", 5, lost))
    executor = executor_with(store, models, dataset_dir=tmp_path)
    plan = spec_.plan
    executor.row_times.record(cost.of_plan(plan), 10.0, 6.0)
    measured = executor.row_times.snapshot()
    assert executor.run(job_id) == JobState.SUCCEEDED, store.get(job_id).error_message
    first = next(e.data for e in store.read_events(job_id) if e.kind == EventKind.PROGRESS)
    assert first["eta_seconds"] == pytest.approx(cost.estimate_plan(plan, measured, 7))
    assert cost.estimate_plan(plan, measured, 7) != pytest.approx(cost.estimate_plan(plan, measured, 12))


def test_a_redelivered_job_samples_only_the_images_it_has_left(store, models, tmp_path, monkeypatch):  # noqa: F811
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("ATELIER_TOY_CALL_LOG", str(calls))
    job_id = redelivered(store, (1, 2, 3), made=2)
    assert executor_with(store, models).run(job_id) == JobState.SUCCEEDED
    rows = [int(line.split()[1]) for line in calls.read_text().splitlines()]
    assert rows == [2] * 3  # 3 steps of one guided image: 2 rows each
    assert store.artifact_bytes(job_id, 0) == store.artifact_bytes(job_id, 1) == b"from the lost worker"


@pytest.mark.parametrize("limit", ["deadline", "time limit"])
def test_an_attempt_taken_over_that_meets_its_limit_ends_nothing(store, models, limit):  # noqa: F811
    # Ownership is asked of Redis only once a minute here, so the superseded attempt goes on
    # sampling until its own clock stops it; its finish must be refused all the same.
    limit_s = 3.0
    job_id = submit(store, steps=12, deadline=time.time() + limit_s if limit == "deadline" else None)
    executor = executor_with(store, models, progress_interval_ms=60_000, task_soft_time_limit=limit_s,
                             task_time_limit=30)
    checks = []

    def take_over(asked):
        checks.append(asked)
        if len(checks) == 2:  # after step 1, whose progress is not written (a minute's interval)
            store.begin_attempt(job_id, "another-worker")
            time.sleep(limit_s + 0.1)  # the limit passes before the next check
        return False

    executor.cancelled = take_over
    assert executor.run(job_id) == JobState.RUNNING
    record = store.get(job_id)
    assert (record.attempt, record.error_code, record.error_message) == (2, ErrorCode.NONE, "")


def test_the_models_loaded_are_the_versions_the_job_was_planned_against(store):  # noqa: F811
    asked = []

    def loader(model, version):
        asked.append((model, version))
        return toy_runtime.load(None, model, version)

    registry = ModelRegistry(loader, max_batch=4, wait_ms=1)
    try:
        job_id = submit(store, steps=2, upscale=4, upscale_steps=1)
        assert executor_with(store, registry).run(job_id) == JobState.SUCCEEDED
    finally:
        registry.close()
    assert sorted(asked) == [("toy", "1"), ("toy-upscale", "1")]


def steps_counted(model: str, sampler: str) -> float:
    return REGISTRY.get_sample_value("atelier_sampler_steps_total", {"model": model, "sampler": sampler}) or 0.0


def test_steps_are_counted_under_the_sampler_that_ran(store, models):  # noqa: F811
    executor = executor_with(store, models)
    planned_default = steps_counted("toy", "euler")  # the toy's default sampler, the plan's
    job_id = submit(store, steps=3)  # no sampler asked
    assert store.get(job_id).spec.sampler == "" and store.get(job_id).spec.plan.sampler == "euler"
    assert executor.run(job_id) == JobState.SUCCEEDED
    assert steps_counted("toy", "euler") - planned_default == 3

    upscaled = steps_counted("toy-upscale", "upscaler")
    upload = store.create("acme", toy_runtime.planned(JobSpec(prompts=(PromptSpec(""),), seeds=(3,),
                                                              upscale_image=png(8), upscale_steps=2)))[0]
    assert executor.run(upload) == JobState.SUCCEEDED
    assert steps_counted("toy-upscale", "upscaler") - upscaled == store.get(upload).steps_done > 0


def test_a_job_an_older_gateway_queued_without_a_plan_counts_its_steps_under_its_sampler(store, models):  # noqa: F811
    executor = executor_with(store, models)
    before = steps_counted("toy", "heun")
    spec = toy_runtime.planned(JobSpec(prompts=(PromptSpec("a red apple"),), seeds=(1,), steps=2, sampler="heun"))
    job_id = store.create("acme", spec.with_(plan=None))[0]
    assert executor.run(job_id) == JobState.SUCCEEDED
    assert steps_counted("toy", "heun") - before == store.get(job_id).steps_done > 0


def test_an_older_gateway_s_inpainting_job_without_a_strength_repaints_from_pure_noise(store, models):  # noqa: F811
    # That release's default (docs/DEPLOY.md, "Upgrades and rollouts"): strength 1.0.
    executor = executor_with(store, models)
    init, mask = np.zeros((16, 16, 4), np.uint8), np.zeros((16, 16), np.uint8)
    init[..., 0], init[..., 3], mask[:, 8:] = 200, 255, 255
    uploads = dict(init_image=encoded(init), mask=encoded(mask), steps=4)
    planned = submit(store, strength=1.0, **uploads)
    unplanned = store.create("acme", toy_runtime.planned(spec(strength=1.0, **uploads)).with_(plan=None,
                                                                                               strength=0.0))[0]
    for job_id in (planned, unplanned):
        assert executor.run(job_id) == JobState.SUCCEEDED
    assert np.array_equal(raw_images(store, unplanned)[0], raw_images(store, planned)[0])
    plain = store.create("acme", toy_runtime.planned(spec(steps=4)).with_(plan=None))[0]  # no mask: no strength
    assert executor.run(plain) == JobState.SUCCEEDED
    prov = next(e for e in store.read_events(plain) if e.kind == EventKind.ARTIFACT).data["provenance"]
    assert prov["strength"] == 0.0
