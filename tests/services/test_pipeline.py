"""Jobs end to end on a real Redis without Celery: JobExecutor + pipeline + the numpy toy model."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from services.common import events as ev
from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobSpec, JobState, PromptSpec
from services.common.settings import Settings
from services.common.store import JobStore
from services.worker.executor import JobExecutor
from services.worker.models import ModelRegistry
from tests.services import toy_runtime

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix="t:", result_ttl_seconds=600)


@pytest.fixture
def models():
    registry = ModelRegistry(lambda m, v: toy_runtime.load(None, m, v), max_batch=16, wait_ms=5)
    yield registry
    registry.close()


@pytest.fixture
def executor(store, models) -> JobExecutor:
    settings = Settings.from_env({}, default_model="toy", progress_interval_ms=0)
    return JobExecutor(store, models, settings, name="test-worker")


def spec(**changes) -> JobSpec:
    base = JobSpec(prompts=(PromptSpec("a red apple", "blurry", "flat"),), seeds=(7,), output_format="raw_rgba8")
    return base.with_(**changes)


def submit(store, **changes) -> str:
    return store.create("acme", toy_runtime.planned(spec(**changes)))[0]


def raw_images(store, job_id) -> dict[int, np.ndarray]:
    out = {}
    for e in store.read_events(job_id):
        if e.kind == EventKind.ARTIFACT:
            w, h = e.data["width"], e.data["height"]
            out[e.data["index"]] = np.frombuffer(e.blob, np.uint8).reshape(h, w, 4)
    return out


def test_a_job_runs_to_success_with_ordered_events_and_provenance(store, executor):
    job_id = submit(store, seeds=(1, 2), steps=5, sampler="dpmpp_2m", preview_every_steps=2, output_format="png")
    assert executor.run(job_id) == JobState.SUCCEEDED
    events = store.read_events(job_id)
    kinds = [e.kind for e in events]
    assert kinds[0:2] == ["queued", "started"] and kinds[-1] == "finished"
    assert kinds.count("artifact") == 2 and kinds.count("preview") == 4  # steps 2 and 4, two images
    progress = [e.data for e in events if e.kind == EventKind.PROGRESS]
    assert progress[-1]["step"] == progress[-1]["total_steps"] == 10
    assert [p["step"] for p in progress] == sorted(p["step"] for p in progress)
    art = next(e for e in events if e.kind == EventKind.ARTIFACT)
    assert art.data["mime_type"] == "image/png" and art.data["seed"] == 1
    assert Image.open(io.BytesIO(art.blob)).size == (16, 16)
    prov = art.data["provenance"]
    assert prov["model_name"] == "toy" and prov["model_sha256"] == "ab" * 32
    assert (prov["sampler"], prov["steps"], prov["guidance_scale"], prov["seed"]) == ("dpmpp_2m", 5, 2.0, 1)
    preview = next(e for e in events if e.kind == EventKind.PREVIEW)
    assert Image.open(io.BytesIO(preview.blob)).format == "JPEG"
    assert events[-1].data["images"] == 2
    job = store.get(job_id)
    assert job.images_done == 2 and job.steps_done == 10
    assert executor.run(job_id) == JobState.SUCCEEDED  # redelivered: nothing runs twice
    assert [e.kind for e in store.read_events(job_id)] == kinds


def test_same_seed_same_image_alone_in_a_bigger_job_and_beside_other_jobs(store, executor):
    alone = submit(store, seeds=(5,), sampler="euler_ancestral", steps=6)
    executor.run(alone)
    reference = raw_images(store, alone)[0]
    bigger = submit(store, seeds=(3, 5, 9), sampler="euler_ancestral", steps=6)
    executor.run(bigger)
    assert np.array_equal(raw_images(store, bigger)[1], reference)

    jobs = [submit(store, seeds=(5,), sampler="euler_ancestral", steps=6)] + [
        submit(store, seeds=(11 + i,), sampler=s, steps=n) for i, (s, n) in enumerate([("heun", 4), ("unipc", 9)])
    ]
    threads = [threading.Thread(target=executor.run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert all(store.get(j).state == JobState.SUCCEEDED for j in jobs)
    assert np.array_equal(raw_images(store, jobs[0])[0], reference)


def test_concurrent_jobs_share_denoiser_calls(store, executor, models, monkeypatch):
    monkeypatch.setenv("ATELIER_TOY_CALL_SECONDS", "0.005")
    jobs = [submit(store, seeds=(i,), steps=8, sampler=s) for i, s in enumerate(["euler", "dpmpp_2m", "ddim"])]
    threads = [threading.Thread(target=executor.run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    (loaded,) = models.loaded()
    (denoiser,) = loaded._denoisers.values()
    assert denoiser.stats.max_requests_per_call >= 2
    assert max(denoiser.stats.batch_sizes) >= 4  # two guided jobs = 4 rows in one call


def test_concurrent_jobs_share_the_upscaler_s_calls(store, executor, models, monkeypatch):
    monkeypatch.setenv("ATELIER_TOY_CALL_SECONDS", "0.005")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buf, "PNG")
    jobs = [store.create("acme", toy_runtime.planned(JobSpec(prompts=(PromptSpec(""),), seeds=(i,), upscale_steps=8,
                                                             upscale_image=buf.getvalue())))[0] for i in range(3)]
    threads = [threading.Thread(target=executor.run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert {store.get(j).state for j in jobs} == {JobState.SUCCEEDED}
    (loaded,) = models.loaded()
    assert loaded.key == "toy-upscale/1"  # an UPSCALE job loads no base model
    (denoiser,) = loaded._denoisers.values()
    assert denoiser.stats.max_requests_per_call >= 2


def test_bulk_prompts_give_prompt_major_artifacts(store, executor):
    prompts = tuple(PromptSpec(f"emoji {i}", "", "pixel") for i in range(5))
    job_id = submit(store, prompts=prompts, seeds=(1, 2), steps=3, priority="batch", guidance_scale=1.0)
    assert executor.run(job_id) == JobState.SUCCEEDED
    arts = [e.data for e in store.read_events(job_id) if e.kind == EventKind.ARTIFACT]
    assert [(a["index"], a["prompt_index"], a["seed"]) for a in arts] == [
        (i, i // 2, (1, 2)[i % 2]) for i in range(10)
    ]
    assert arts[3]["provenance"]["prompt"] == "emoji 1"


def encoded(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def test_image_to_image_and_inpainting_keep_what_they_should(store, executor):
    init = np.zeros((16, 16, 4), np.uint8)
    init[..., 0], init[..., 3] = 200, 255
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 255  # repaint the right half
    job_id = submit(store, init_image=encoded(init), strength=0.5, steps=6)
    assert executor.run(job_id) == JobState.SUCCEEDED
    light = raw_images(store, job_id)[0]
    full = submit(store, steps=6)
    executor.run(full)
    # Half the schedule over the init image stays nearer to it than sampling from noise.
    assert np.abs(light.astype(int) - init).mean() < np.abs(raw_images(store, full)[0].astype(int) - init).mean()
    inpaint = submit(store, init_image=encoded(init), mask=encoded(mask), strength=1.0, steps=6)
    assert executor.run(inpaint) == JobState.SUCCEEDED
    out = raw_images(store, inpaint)[0]
    assert np.array_equal(out[:, :8], init[:, :8]) and not np.array_equal(out[:, 8:], init[:, 8:])
    prov = next(e for e in store.read_events(inpaint) if e.kind == EventKind.ARTIFACT).data["provenance"]
    assert prov["init_image_sha256"] and prov["mask_sha256"] and prov["strength"] == 1.0


@pytest.mark.parametrize("fmt, mime, pil", [("jpeg", "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP")])
def test_output_formats(store, executor, fmt, mime, pil):
    job_id = submit(store, output_format=fmt, steps=2, tiling=True, width=32, height=16)
    assert executor.run(job_id) == JobState.SUCCEEDED
    art = next(e for e in store.read_events(job_id) if e.kind == EventKind.ARTIFACT)
    assert art.data["mime_type"] == mime and (art.data["width"], art.data["height"]) == (32, 16)
    image = Image.open(io.BytesIO(art.blob))
    assert image.format == pil and image.size == (32, 16)


def test_cancel_stops_within_one_step(store, executor, monkeypatch):
    monkeypatch.setenv("ATELIER_TOY_CALL_SECONDS", "0.02")
    job_id = submit(store, steps=100, guidance_scale=1.0)
    runner = threading.Thread(target=executor.run, args=(job_id,))
    runner.start()
    deadline = time.monotonic() + 10
    while store.get(job_id).steps_done < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    state, cancelled = store.cancel(job_id)
    steps_at_cancel = store.get(job_id).steps_done
    runner.join(timeout=10)
    assert not runner.is_alive() and (state, cancelled) == (JobState.CANCELLED, True)
    events = store.read_events(job_id)
    assert events[-1].kind == EventKind.FINISHED and events[-1].data["state"] == JobState.CANCELLED
    assert store.get(job_id).steps_done <= steps_at_cancel + 1
    assert not [e for e in events if e.kind == EventKind.ARTIFACT]


def test_a_job_past_its_deadline_expires_without_running(store, executor, models):
    job_id = submit(store, deadline=time.time() - 1)
    assert executor.run(job_id) == JobState.EXPIRED
    assert [e.kind for e in store.read_events(job_id)] == ["queued", "finished"]
    assert models.loaded() == []  # not even the model was loaded for it


def test_nan_and_unknown_model_fail_the_job_not_the_worker(store, executor):
    bad = submit(store, prompts=(PromptSpec("nan please"),), steps=3)
    assert executor.run(bad) == JobState.FAILED
    assert store.get(bad).error_code == ErrorCode.NUMERICAL
    unknown = submit(store, model="no-such-model")
    assert executor.run(unknown) == JobState.FAILED
    job = store.get(unknown)
    assert job.error_code == ErrorCode.MODEL_UNAVAILABLE and "no-such-model" in job.error_message
    bad_input = submit(store, init_image=b"not an image", strength=0.5)
    assert executor.run(bad_input) == JobState.FAILED and store.get(bad_input).error_code == ErrorCode.INVALID_INPUT
    good = submit(store, steps=2)
    assert executor.run(good) == JobState.SUCCEEDED


def test_a_redelivered_job_makes_only_the_missing_images(store, executor):
    job_id = submit(store, seeds=(1, 2, 3), steps=3)
    attempt = store.begin_attempt(job_id, "lost-worker")
    store.add_artifact(job_id, attempt, ev.Artifact(index=1, seed=2), b"from the lost worker")
    assert executor.run(job_id) == JobState.SUCCEEDED
    arts = [e for e in store.read_events(job_id) if e.kind == EventKind.ARTIFACT]
    assert sorted(a.data["index"] for a in arts) == [0, 1, 2]
    assert store.get(job_id).images_done == 3 and store.get(job_id).attempt == 2


def test_a_cascade_and_an_upscale_job_run_their_models_and_are_measured_per_model(store, executor):
    cascade = submit(store, seeds=(1, 2), steps=4, upscale=4, upscale_steps=2)
    assert executor.run(cascade) == JobState.SUCCEEDED
    images = raw_images(store, cascade)
    assert {i: a.shape for i, a in images.items()} == {0: (64, 64, 4), 1: (64, 64, 4)}
    record = store.get(cascade)
    assert record.steps_done == record.steps_total == 2 * (4 + 2)

    buf = io.BytesIO()
    Image.new("RGBA", (12, 8), (10, 200, 30, 128)).save(buf, "PNG")
    upload = store.create("acme", toy_runtime.planned(JobSpec(prompts=(PromptSpec(""),), seeds=(3,),
                                                              output_format="raw_rgba8", upscale_image=buf.getvalue(),
                                                              upscale_fast=True)))[0]
    assert executor.run(upload) == JobState.SUCCEEDED
    assert raw_images(store, upload)[0].shape == (32, 48, 4)
    assert store.get(upload).steps_total == 1

    measured = executor.row_times.snapshot()
    assert set(measured["toy/1"]) == {"16x16"}  # the base model at its own size
    assert set(measured["toy-upscale/1"]) == {"64x64", "48x32"}  # the upscaler at its output sizes
    assert measured["toy-upscale/1"]["64x64"]["fixed"] == 0.0  # a cascade's fixed part is the base model's


def test_a_job_whose_upscaler_cannot_load_fails_model_unavailable(store, executor):
    job = toy_runtime.planned(spec(upscale=4))
    job = job.with_(plan=replace(job.plan, upscale=replace(job.plan.upscale, model="missing")))
    job_id = store.create("acme", job)[0]
    assert executor.run(job_id) == JobState.FAILED
    record = store.get(job_id)
    assert record.error_code == ErrorCode.MODEL_UNAVAILABLE and "missing" in record.error_message
