"""One job's images: runs the job's plan, chunk by chunk, through the plan's stages.

The gateway resolved the job once into a :class:`services.common.plan.JobPlan`; this module
checks that the loaded model is the one it was planned against, loads the uploads its kind
needs, and streams chunks (each one sampler run over up to ``rows_per_chunk`` images, so a
bulk job of many prompts sends its artifacts as it goes and never holds everything at once)
through the stages in :data:`STAGES`. It talks to the outside only through a
:class:`JobReporter` (events, cancellation) and the model runtime; the job store and Celery
never appear here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

from services.common.jobs import JobRecord, JobSpec
from services.common.plan import JobPlan, ModelFacts, Stage, resolve
from services.worker import image_metadata, images, stages
from services.worker.runtime import DenoiseFn, ModelRuntime
from services.worker.stages import Chunk, JobContext, JobReporter, TextCache

__all__ = ["STAGES", "InvalidJob", "JobReporter", "ModelMismatch", "generate"]

# A new stage: its module, its name in services.common.plan.Stage, and one line here.
STAGES: dict[str, Callable[[Chunk], None]] = {
    Stage.CONDITION: stages.condition,
    Stage.SAMPLE: stages.sample,
    Stage.DECODE: stages.decode,
    Stage.COMPOSITE: stages.composite,
    Stage.METADATA: image_metadata.metadata,
    Stage.ENCODE: stages.encode,
    Stage.REPORT: stages.report,
}


class InvalidJob(ValueError):
    """The job cannot be run as asked (fails with INVALID_INPUT)."""


class ModelMismatch(ValueError):
    """The loaded model version is not the one the job was planned against (MODEL_UNAVAILABLE)."""


def checked_plan(job: JobRecord, runtime: ModelRuntime) -> JobPlan:
    """The job's plan, when this runtime can run it."""
    plan, info = job.spec.plan, runtime.info
    if plan is None:
        plan = plan_of_an_older_gateway(job.spec, info)
    if plan.model_sha256 != info.sha256:
        raise ModelMismatch(f"model {info.name}/{info.version} loaded with manifest sha256 {info.sha256[:12]}..., "
                            f"the job was planned for {plan.model_sha256[:12]}...")
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


def _uploads(job: JobRecord, plan: JobPlan, max_pixels: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    spec = job.spec
    try:
        init = images.load_rgba(spec.init_image, plan.width, plan.height, max_pixels) if spec.init_image else None
        mask = images.load_mask(spec.mask, plan.width, plan.height, max_pixels) if spec.mask else None
    except images.BadImage as err:
        raise InvalidJob(str(err)) from None
    return init, mask


def generate(
    job: JobRecord,
    runtime: ModelRuntime,
    denoiser: Callable[[bool, tuple[int, int, int]], DenoiseFn],
    reporter: JobReporter,
    *,
    rows_per_chunk: int = 8,
    preview_size: int = 64,
    max_upload_pixels: int = 4096 * 4096,
    skip: frozenset[int] = frozenset(),
) -> int:
    """Make the job's images (except indices in `skip`, already made); returns how many were made.

    `denoiser(tiling, latent_shape)` gives the shared (batching) denoiser to use.
    """
    plan = checked_plan(job, runtime)
    latent_shape = runtime.info.latent_shape(plan.width, plan.height)
    init_rgba, mask = _uploads(job, plan, max_upload_pixels)
    todo = [i for i in range(plan.images_total) if i not in skip]
    ctx = JobContext(plan, runtime, denoiser(plan.tiling, latent_shape), reporter,
                     np.asarray(runtime.sigmas(plan.steps), dtype=np.float64), latent_shape, TextCache(runtime),
                     steps_total=len(todo) * plan.steps_run, preview_size=preview_size, init_rgba=init_rgba,
                     mask=mask)
    # A batching denoiser learns that this job is active, so it never waits for it in vain.
    session = getattr(ctx.denoise, "session", None)
    with session() if session is not None else contextlib.nullcontext():
        return _run_chunks(ctx, todo, max(1, rows_per_chunk // (2 if plan.guided else 1)))


def _run_chunks(ctx: JobContext, todo: list[int], rows: int) -> int:
    ctx.reporter.check()
    ctx.reporter.progress(0, ctx.steps_total, 0)
    for start in range(0, len(todo), rows):
        chunk = Chunk(ctx, todo[start : start + rows])
        for name in ctx.plan.stages:
            STAGES[name](chunk)
    return ctx.made
