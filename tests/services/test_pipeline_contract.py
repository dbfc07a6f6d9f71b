"""What a job's events tell its user (services/worker/pipeline.py): previews at the requested steps
and labelled with them, progress from zero, provenance naming the model version, the software
and how the image finished, and the requested output quality."""

from __future__ import annotations

from dataclasses import replace
from importlib import metadata

import numpy as np
import pytest

from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobRecord, JobState, PromptSpec
from services.worker.pipeline import InvalidJob, ModelMismatch, checked_plan, generate
from services.worker.upscaling import Upscaler
from tests.services import test_dataset_jobs
from tests.services.test_pipeline import executor, models, raw_images, spec, store, submit  # noqa: F401 - fixtures
from tests.services.toy_runtime import ArtifactCollector, ToyRuntime, ToyUpscaler, planned

pytestmark = pytest.mark.redis


def events_of(store, job_id, kind):  # noqa: F811 - the store fixture
    return [e for e in store.read_events(job_id) if e.kind == kind]


def test_previews_come_at_every_nth_step_before_the_last_labelled_with_their_step(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1, 2), steps=6, sampler="euler", preview_every_steps=3)
    assert executor.run(job_id) == JobState.SUCCEEDED
    previews = [(e.data["index"], e.data["step"]) for e in events_of(store, job_id, EventKind.PREVIEW)]
    assert sorted(previews) == [(0, 3), (1, 3)]  # step 6 is the image itself, not a preview


def test_progress_starts_at_zero_steps_and_zero_images(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1,), steps=3, sampler="euler")
    assert executor.run(job_id) == JobState.SUCCEEDED
    first = events_of(store, job_id, EventKind.PROGRESS)[0].data
    assert (first["step"], first["total_steps"], first["images_done"]) == (0, 3, 0)


def test_provenance_names_the_model_version_the_software_and_a_completed_image(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1,), steps=2)
    assert executor.run(job_id) == JobState.SUCCEEDED
    artifact = events_of(store, job_id, EventKind.ARTIFACT)[0].data
    assert artifact["finish_reason"] == "COMPLETED"
    assert artifact["provenance"]["model_version"] == "1"
    assert artifact["provenance"]["software_version"] == metadata.version("atelier")


def test_the_requested_quality_sizes_a_lossy_image(store, executor):  # noqa: F811
    sizes = {}
    for quality in (5, 95):
        job_id = submit(store, seeds=(3,), steps=2, output_format="jpeg", output_quality=quality, width=64, height=64)
        assert executor.run(job_id) == JobState.SUCCEEDED
        sizes[quality] = len(events_of(store, job_id, EventKind.ARTIFACT)[0].blob)
    assert sizes[5] < sizes[95]


def stored(store, spec) -> str:  # noqa: F811 - the store fixture
    return store.create("acme", spec)[0]


def test_the_worker_runs_only_a_plan_made_for_the_model_it_loaded(store, executor):  # noqa: F811
    # The gateway refuses what a model cannot make (tests/gateway/test_validation.py) and plans
    # the rest; a worker never resolves a request itself, but for jobs an older gateway queued.
    bare = spec(seeds=(1,), steps=2)
    other = planned(bare).with_(plan=replace(planned(bare).plan, model_sha256="cd" * 32))
    odd_stage = planned(bare).with_(plan=replace(planned(bare).plan, stages=("condition", "watermark")))
    cases = [(other, ErrorCode.MODEL_UNAVAILABLE, "the job was planned for cdcdcdcdcdcd"),
             (odd_stage, ErrorCode.INVALID_INPUT, "stages this worker lacks: watermark")]
    for job_spec, code, reason in cases:
        job_id = stored(store, job_spec)
        assert executor.run(job_id) == JobState.FAILED
        record = store.get(job_id)
        assert (record.error_code, reason in record.error_message) == (code, True), record.error_message


def test_guidance_and_its_rescale_change_the_image_and_text_alone_has_no_strength(store, executor):  # noqa: F811
    images = {}
    for guidance, rescale in ((2.0, 0.0), (6.0, 0.0), (6.0, 0.7)):
        job_id = submit(store, seeds=(5,), steps=4, guidance_scale=guidance, guidance_rescale=rescale)
        assert executor.run(job_id) == JobState.SUCCEEDED
        images[guidance, rescale] = raw_images(store, job_id)[0]
        prov = events_of(store, job_id, EventKind.ARTIFACT)[0].data["provenance"]
        assert (prov["guidance_scale"], prov["guidance_rescale"], prov["strength"]) == (guidance, rescale, 0.0)
    assert not np.array_equal(images[2.0, 0.0], images[6.0, 0.0])
    assert not np.array_equal(images[6.0, 0.0], images[6.0, 0.7])


def test_a_job_an_older_gateway_queued_without_a_plan_runs_as_if_planned(store, executor):  # noqa: F811
    # Workers are upgraded first (docs/DEPLOY.md): jobs queued before then carry no plan.
    images = {}
    for name, job_spec in (("bare", spec(seeds=(4,), steps=3)), ("planned", planned(spec(seeds=(4,), steps=3)))):
        job_id = stored(store, job_spec)
        assert executor.run(job_id) == JobState.SUCCEEDED
        images[name] = raw_images(store, job_id)[0]
    np.testing.assert_array_equal(images["bare"], images["planned"])


def test_a_refused_plan_s_message_names_both_models_hashes_and_what_was_not_loaded():
    # The job fails MODEL_UNAVAILABLE with this message: what an operator reads to find which
    # worker ran an older model version than the gateway planned for.
    toy, upscaler = ToyRuntime(), ToyUpscaler()
    other = planned(spec(seeds=(1,), steps=2))
    other = other.with_(plan=replace(other.plan, model_sha256="cd" * 32))
    with pytest.raises(ModelMismatch) as refused:
        checked_plan(JobRecord("j", "acme", other), toy)
    assert str(refused.value) == ("model toy/1 loaded with manifest sha256 abababababab..., "
                                  "the job was planned for cdcdcdcdcdcd...")
    cascade = JobRecord("j", "acme", planned(spec(seeds=(1,), steps=2, upscale=4)))
    with pytest.raises(ModelMismatch) as refused:
        checked_plan(cascade, toy)
    assert str(refused.value) == "the job upscales with toy-upscale/1, which was not loaded for it"
    assert checked_plan(cascade, toy, Upscaler(upscaler, upscaler.denoiser())) == cascade.spec.plan


class _ProgressLog(ArtifactCollector):
    """Keeps every progress report as the pipeline makes it (the real reporter sends some of them)."""

    def __init__(self):
        super().__init__()
        self.told: list[tuple[int, int, int]] = []

    def progress(self, steps_done, steps_total, images_done, shards=None):
        self.told.append((steps_done, steps_total, images_done))


def test_every_progress_report_counts_the_images_made_before_it():
    runtime, reporter = ToyRuntime(), _ProgressLog()
    job = JobRecord("j", "acme", planned(spec(seeds=(1, 2), steps=3, sampler="euler")))
    generate(job, runtime, lambda tiling, shape: runtime.denoiser(tiling), reporter, rows_per_chunk=1)
    assert reporter.told == [(0, 6, 0), (1, 6, 0), (2, 6, 0), (3, 6, 0), (3, 6, 1),
                             (4, 6, 1), (5, 6, 1), (6, 6, 1), (6, 6, 2)]


class _DecodeLog(ToyRuntime):
    """The toy model, noting how it was asked to decode (its decoder is pointwise, so tiling
    changes none of its pixels; a real VAE's seams would show)."""

    def __init__(self):
        super().__init__()
        self.tiled: list[bool] = []

    def decode(self, latents, tiling=False):
        self.tiled.append(tiling)
        return super().decode(latents, tiling)


@pytest.mark.parametrize("tiling", [False, True])
def test_a_tiling_job_s_images_are_decoded_tiling_and_its_denoiser_asked_for_by_tiling_and_shape(tiling):
    runtime = _DecodeLog()
    job = JobRecord("j", "acme", planned(spec(seeds=(1, 2), steps=2, tiling=tiling)))
    denoisers = []  # the worker keeps one shared denoiser per model, tiling and latent shape
    generate(job, runtime, lambda t, shape: denoisers.append((t, shape)) or runtime.denoiser(t),
             ArtifactCollector(), rows_per_chunk=2)
    assert runtime.tiled and set(runtime.tiled) == {tiling}
    assert denoisers == [(tiling, runtime.info.latent_shape(job.spec.plan.width, job.spec.plan.height))]


class _PolicyLog(ArtifactCollector):
    def __init__(self):
        super().__init__()
        self.policies: list = []

    def policy(self, payload):
        self.policies.append(payload)


def test_a_refused_prompt_s_images_are_reported_withheld_and_only_the_others_are_made():
    runtime, reporter = ToyRuntime(), _PolicyLog()
    job_spec = planned(spec(prompts=(PromptSpec("a red apple"), PromptSpec("a knife")), seeds=(1, 2), steps=2))
    job_spec = job_spec.with_(plan=replace(job_spec.plan, refused_prompts=((1, "weapons"),), policy_name="family"))
    made = generate(JobRecord("j", "acme", job_spec), runtime, lambda t, shape: runtime.denoiser(t), reporter)
    reasons = {data["index"]: (data["finish_reason"], data["concept"], bool(blob)) for data, blob in reporter.artifacts}
    assert made == 2 and reasons == {0: ("COMPLETED", "", True), 1: ("COMPLETED", "", True),
                                     2: ("PROMPT_FILTERED", "weapons", False), 3: ("PROMPT_FILTERED", "weapons", False)}
    assert [(p.prompt_index, p.indices, p.concept, p.policy) for p in reporter.policies] == [
        (1, (2, 3), "weapons", "family")]


def test_a_dataset_job_given_no_shard_store_is_refused_saying_so():
    runtime = ToyRuntime()
    dataset_spec = planned(test_dataset_jobs.dataset_spec("out"))
    with pytest.raises(InvalidJob) as refused:
        generate(JobRecord("j", "acme", dataset_spec), runtime, lambda t, shape: runtime.denoiser(t),
                 ArtifactCollector())
    assert str(refused.value) == "a dataset job was given no shard store to write to"


@pytest.mark.parametrize("guidance, told", [
    # unguided: the 4 images in one chunk of 4 rows
    (1.0, [(0, 4, 0), (4, 4, 0), (4, 4, 4)]),
    # guided: an unconditional row beside each image's, so 2 images a chunk
    (5.0, [(0, 4, 0), (2, 4, 0), (2, 4, 2), (4, 4, 2), (4, 4, 4)]),
])
def test_a_chunk_holds_rows_per_chunk_denoiser_rows(guidance, told):
    runtime, reporter = ToyRuntime(), _ProgressLog()
    job = JobRecord("j", "acme", planned(spec(seeds=(1, 2, 3, 4), steps=1, sampler="euler", guidance_scale=guidance)))
    generate(job, runtime, lambda tiling, shape: runtime.denoiser(tiling), reporter, rows_per_chunk=4)
    assert reporter.told == told


def test_a_plan_naming_stages_this_worker_lacks_is_refused_naming_them_all():
    job_spec = planned(spec(seeds=(1,), steps=2))
    job_spec = job_spec.with_(plan=replace(job_spec.plan, stages=("condition", "watermark", "frame")))
    with pytest.raises(InvalidJob) as refused:
        checked_plan(JobRecord("j", "acme", job_spec), ToyRuntime())
    assert str(refused.value) == "the job's plan names stages this worker lacks: watermark, frame"


def test_a_plan_queued_before_content_credentials_delivers_the_same_images_with_none(store, executor):  # noqa: F811
    # A job an older gateway planned has no credentials stage; its images still go out, unsigned.
    signed = planned(spec(seeds=(4, 5), steps=2))
    unsigned = signed.with_(plan=replace(signed.plan, stages=tuple(s for s in signed.plan.stages
                                                                    if s != "credentials")))
    made = {}
    for name, job_spec in (("signed", signed), ("unsigned", unsigned)):
        job_id = stored(store, job_spec)
        assert executor.run(job_id) == JobState.SUCCEEDED
        made[name] = [(e.blob, e.data["content_credentials"]) for e in events_of(store, job_id, EventKind.ARTIFACT)]
    assert [blob for blob, _ in made["unsigned"]] == [blob for blob, _ in made["signed"]]
    assert [credentials for _, credentials in made["unsigned"]] == ["", ""]
    assert all(credentials for _, credentials in made["signed"])  # raw pixels: a detached manifest each
