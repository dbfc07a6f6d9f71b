"""One job's images: runs the job's plan, chunk by chunk, through the plan's stages.

The gateway resolved the job once into a :class:`services.common.plan.JobPlan`; this module
checks that the loaded models (the base model; the upscaler when the plan upscales; an UPSCALE
job has only the latter) are the ones it was planned against, loads the uploads its kind
needs, and streams chunks (each one sampler run over up to ``rows_per_chunk`` images, so a
bulk job of many prompts sends its artifacts as it goes and never holds everything at once)
through the stages in :data:`STAGES`. It talks to the outside only through a
:class:`JobReporter` (events, cancellation) and the model runtime; the job store and Celery
never appear here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from services.common.jobs import JobRecord, JobSpec
from services.common.plan import JobKind, JobPlan, ModelFacts, Stage, resolve
from services.worker import concept_check, content_credentials, datasets, image_metadata, images, stages, upscaling
from services.worker.refused_prompts import withhold
from services.worker.runtime import DenoiseFn, ModelRuntime
from services.worker.stages import Chunk, JobContext, JobReporter, TextCache
from services.worker.upscaling import Upscaler

__all__ = ["STAGES", "InvalidJob", "JobReporter", "ModelMismatch", "Upscaler", "generate"]

# A new stage: its module, its name in services.common.plan.Stage, and one line here.
STAGES: dict[str, Callable[[Chunk], None]] = {
    Stage.CONDITION: stages.condition,
    Stage.SAMPLE: stages.sample,
    Stage.DECODE: stages.decode,
    Stage.COMPOSITE: stages.composite,
    Stage.UPSCALE: upscaling.upscale,
    Stage.CONCEPTS: concept_check.check,
    Stage.METADATA: image_metadata.metadata,
    Stage.ENCODE: stages.encode,
    Stage.CREDENTIALS: content_credentials.sign,
    Stage.REPORT: stages.report,
    Stage.ARCHIVE: datasets.archive,
}


class InvalidJob(ValueError):
    """The job cannot be run as asked (fails with INVALID_INPUT)."""


class ModelMismatch(ValueError):
    """The loaded model version is not the one the job was planned against (MODEL_UNAVAILABLE)."""


def _same_model(info, sha256: str) -> None:
    if sha256 != info.sha256:
        raise ModelMismatch(f"model {info.name}/{info.version} loaded with manifest sha256 {info.sha256[:12]}..., "
                            f"the job was planned for {sha256[:12]}...")


def checked_plan(job: JobRecord, runtime: ModelRuntime | None, upscaler: Upscaler | None = None,
                 concepts=None) -> JobPlan:
    """The job's plan, when these runtimes can run it (``concepts``: the concept classifier loaded for it)."""
    plan = job.spec.plan
    if plan is None:
        plan = plan_of_an_older_gateway(job.spec, runtime.info)
    if plan.kind != JobKind.UPSCALE:
        _same_model(runtime.info, plan.model_sha256)
    if plan.upscale is not None:
        if upscaler is None:
            raise ModelMismatch(f"the job upscales with {plan.upscale.model}/{plan.upscale.version}, "
                                "which was not loaded for it")
        _same_model(upscaler.runtime.info, plan.upscale.sha256)
    if plan.concept_check is not None:
        if concepts is None:
            raise ModelMismatch(f"the job's images go through the concept classifier {plan.concept_check.model}/"
                                f"{plan.concept_check.version}, which was not loaded for it")
        _same_model(concepts.info, plan.concept_check.sha256)
    unknown = [s for s in plan.stages if s not in STAGES]
    if unknown:
        raise InvalidJob(f"the job's plan names stages this worker lacks: {', '.join(unknown)}")
    return plan


def plan_of_an_older_gateway(spec: JobSpec, model: ModelFacts) -> JobPlan:
    """The plan of a job queued by a gateway of the release before plans.

    Workers are upgraded before gateways and read the job records of the release before
    (docs/DEPLOY.md, "Upgrades and rollouts"), so a job such a gateway validated is planned
    here once, by the gateway's own rule, with that release's default of inpainting (strength
    1.0: repaint the masked area from pure noise)."""
    if spec.mask and not spec.strength:
        spec = spec.with_(strength=1.0)
    return resolve(spec, model)


def _uploads(job: JobRecord, plan: JobPlan, max_pixels: int) -> dict[str, np.ndarray | None]:
    """The job's uploads as the stages take them, at the plan's (base) size."""
    spec = job.spec
    loads = {"init_rgba": (images.load_rgba, spec.init_image), "mask": (images.load_mask, spec.mask),
             "upscale_rgba": (images.load_rgba, spec.upscale_image)}
    try:
        return {name: load(data, plan.width, plan.height, max_pixels) if data else None
                for name, (load, data) in loads.items()}
    except images.BadImage as err:
        raise InvalidJob(str(err)) from None


def generate(
    job: JobRecord,
    runtime: ModelRuntime | None,
    denoiser: Callable[[bool, tuple[int, int, int]], DenoiseFn] | None,
    reporter: JobReporter,
    *,
    rows_per_chunk: int = 8,
    preview_size: int = 64,
    max_upload_pixels: int = 4096 * 4096,
    skip: frozenset[int] = frozenset(),
    upscaler: Upscaler | None = None,
    measured: dict[str, float] | None = None,
    concepts=None,
    shards: datasets.ShardSink | None = None,
    dataset_chunks_in_flight: int = 1,
) -> int:
    """Make the job's images (except indices in `skip`, already made); returns how many were made.

    `denoiser(tiling, latent_shape)` gives the shared (batching) denoiser of the base model to
    use; an UPSCALE job has no base model (`runtime` and `denoiser` None). `measured`, when
    given, receives the seconds spent in the upscaler's sampling (`upscale_seconds`). A dataset
    job writes its images to ``shards``, ``dataset_chunks_in_flight`` chunks at a time, and skips
    the shards it has already written.
    """
    plan = checked_plan(job, runtime, upscaler, concepts)
    if plan.dataset is not None:
        if shards is None:
            raise InvalidJob("a dataset job was given no shard store to write to")
        written = shards.written()
        todo = [i for s in datasets.shards_to_make(plan, written) for i in plan.dataset.shard_indices(s)]
    else:
        todo = withhold(plan, reporter, [i for i in range(plan.images_total) if i not in skip])
    shared = dict(steps_total=len(todo) * plan.steps_per_image, preview_size=preview_size, upscaler=upscaler,
                  concepts=concepts, tenant=job.tenant,
                  **_uploads(job, plan, max_upload_pixels))
    if plan.kind == JobKind.UPSCALE:
        ctx = JobContext(plan, None, None, reporter, None, None, None, **shared)
    else:
        latent_shape = runtime.info.latent_shape(plan.width, plan.height)
        ctx = JobContext(plan, runtime, denoiser(plan.tiling, latent_shape), reporter,
                         np.asarray(runtime.sigmas(plan.steps), dtype=np.float64), latent_shape, TextCache(runtime),
                         **shared)
    rows = max(1, rows_per_chunk // (2 if plan.guided else 1))
    try:
        if plan.dataset is not None:
            return datasets.run_shards(ctx, shards, written, rows, _run_stages, dataset_chunks_in_flight)
        return _run_chunks(ctx, todo, rows)
    finally:
        if measured is not None:
            measured["upscale_seconds"] = ctx.upscale_seconds


def _run_chunks(ctx: JobContext, todo: list[int], rows: int) -> int:
    ctx.reporter.check()
    ctx.reporter.progress(0, ctx.steps_total, 0)
    for start in range(0, len(todo), rows):
        _run_stages(Chunk(ctx, todo[start : start + rows]))
    return ctx.made


def _run_stages(chunk: Chunk) -> None:
    for name in chunk.job.plan.stages:
        STAGES[name](chunk)
