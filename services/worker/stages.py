"""The stages one chunk of a job goes through, each a function of one :class:`Chunk`.

condition -> sample -> decode -> [composite] -> [upscale] -> [concepts] -> [metadata] -> encode -> report
(an UPSCALE job: upscale -> [concepts] -> [metadata] -> encode -> report): the plan lists which run
(services/common/plan.py, ``stages_of``) and services/worker/pipeline.py binds each name to its
function (the upscale stage is services/worker/upscaling.py, the concept check
services/worker/concept_check.py). A stage reads what the stages before it left on the chunk
and leaves its own result there; the job-wide things (plan, runtime, reporter, schedule,
uploads) are on ``chunk.job``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from diffusion.editing import composite as composite_pixels
from diffusion.guidance import ClassifierFreeGuidance, EmbeddedGuidance
from diffusion.noise import SeededNoise, initial_noise
from diffusion.samplers import SAMPLERS, SamplerStep
from services.common import events as ev
from services.common.jobs import FinishReason
from services.common.plan import JobPlan
from services.worker import batching, images
from services.worker.batching import NonFiniteOutput
from services.worker.kinds import KINDS
from services.worker.provenance import provenance
from services.worker.runtime import Cond, DenoiseFn, ModelRuntime


class JobReporter(Protocol):
    """Where the pipeline sends what happens, and asks whether to go on."""

    def check(self) -> None:
        """Raise to stop the job (cancelled, deadline passed, time limit)."""

    def progress(self, steps_done: int, steps_total: int, images_done: int,
                 shards: tuple[int, int] | None = None) -> None:
        """``shards``: a dataset job's (shards written, shards in all)."""

    def preview(self, index: int, step: int, jpeg: bytes, width: int, height: int) -> None: ...

    def artifact(self, payload: ev.Artifact, blob: bytes) -> None: ...

    def policy(self, payload: ev.Policy) -> None:
        """The content policy withheld an image (the concept stage)."""


def _rows(cond: Cond, index: Sequence[int]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[list(index)] for k, v in cond.items()}


class TextCache:
    """Encodes each distinct (prompt, style) of a job once."""

    def __init__(self, runtime: ModelRuntime):
        self.runtime = runtime
        self._rows: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def encode(self, prompts: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        missing = sorted({p for p in prompts if p not in self._rows})
        if missing:
            cond = self.runtime.encode_text([p for p, _ in missing], [s for _, s in missing])
            for i, key in enumerate(missing):
                self._rows[key] = _rows(cond, [i])
        parts = [self._rows[p] for p in prompts]
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


@dataclass
class JobContext:
    """What every chunk of one job shares. An UPSCALE job has no base model: no runtime,
    denoiser, schedule or text cache."""

    plan: JobPlan
    runtime: ModelRuntime | None
    denoise: DenoiseFn | None
    reporter: JobReporter
    sigmas: np.ndarray | None  # the whole schedule of plan.steps; a kind may run only its tail
    latent_shape: tuple[int, int, int] | None
    texts: TextCache | None
    steps_total: int  # steps of every image this attempt makes, its upscaler's included
    preview_size: int = 64
    init_rgba: np.ndarray | None = None  # [H, W, 4] uint8
    mask: np.ndarray | None = None  # [H, W] in [0, 1]: 1 = repaint
    upscaler: Any = None  # services.worker.upscaling.Upscaler when the plan upscales
    upscale_rgba: np.ndarray | None = None  # an UPSCALE job's upload, [H, W, 4] uint8
    concepts: Any = None  # services.worker.concept_runtime.OnnxConceptRuntime when the plan checks concepts
    tenant: str = ""  # whose job: the policy decisions' metric label
    made: int = 0  # images reported so far
    shard: Any = None  # a dataset job's samples of the shard being filled (datasets.ShardSamples)
    upscale_seconds: float = 0.0  # time in the upscaler's sampling, for the job's measured cost


@dataclass
class Chunk:
    """Up to rows_per_chunk images of a job, sampled as one batch, and what each stage made of them."""

    job: JobContext
    indices: list[int]
    cond: Cond | None = None
    uncond: Cond | None = None
    latents: np.ndarray | None = None
    rgba: np.ndarray | None = None  # [B, H, W, 4] uint8
    metadata: list[dict[str, str]] = field(default_factory=list)  # text fields to write into each file
    encoded: list[tuple[bytes, str]] = field(default_factory=list)  # (bytes, MIME type)
    credentials: list[bytes] = field(default_factory=list)  # each raw image's detached C2PA manifest store

    @property
    def picks(self):
        return [self.job.plan.image(i) for i in self.indices]  # (prompt_index, prompt, seed)


def condition(chunk: Chunk) -> None:
    picks = chunk.picks
    chunk.cond = chunk.job.texts.encode([(pr.prompt, pr.style) for _, pr, _ in picks])
    if not chunk.job.plan.guidance_input:  # guidance built into the network: no unconditional branch
        chunk.uncond = chunk.job.texts.encode([(pr.negative_prompt, pr.style) for _, pr, _ in picks])


def _on_step(chunk: Chunk):
    job, indices = chunk.job, chunk.indices
    reporter, steps_total, made = job.reporter, job.steps_total, job.made
    done_before = made * job.plan.steps_per_image

    def on_step(step: SamplerStep) -> None:
        reporter.check()
        reporter.progress(done_before + (step.i + 1) * len(indices), steps_total, made)
        every = job.plan.preview_every_steps
        if every and (step.i + 1) % every == 0 and step.i + 1 < step.steps:
            _send_previews(job, indices, step)

    return on_step


def _send_previews(job: JobContext, indices: list[int], step: SamplerStep) -> None:
    rgb = job.runtime.preview(np.asarray(step.denoised, dtype=np.float32))
    for row, index in enumerate(indices):
        jpeg, w, h = images.preview_jpeg(rgb[row], job.preview_size)
        job.reporter.preview(index, step.i + 1, jpeg, w, h)


def sample(chunk: Chunk) -> None:
    job, plan = chunk.job, chunk.job.plan
    picks = chunk.picks
    seeds = tuple(seed for _, _, seed in picks)
    if plan.guidance_input:  # the network takes the scale: one row an image (docs/MODEL.md, "Fast mode")
        guided = EmbeddedGuidance(job.denoise, chunk.cond, plan.guidance_scale)
    else:
        guided = ClassifierFreeGuidance(job.denoise, chunk.cond, chunk.uncond, plan.guidance_scale,
                                        plan.guidance_rescale)
    start = KINDS[plan.kind](job, guided, initial_noise(seeds, job.latent_shape, dtype=np.float32))
    noise = SeededNoise(seeds, job.latent_shape, "float32")
    # A batching denoiser counts this job as active only while it samples, so it never waits for it in vain.
    with batching.sampling(job.denoise):
        x = SAMPLERS[plan.sampler](start.model, start.x.astype(np.float32), start.sigmas, noise=noise,
                                   callback=_on_step(chunk), **plan.sampler_options)
    if not np.isfinite(x).all():
        raise NonFiniteOutput("the sampler produced non-finite latents")
    chunk.latents = x


def decode(chunk: Chunk) -> None:
    chunk.rgba = chunk.job.runtime.decode(chunk.latents.astype(np.float32), tiling=chunk.job.plan.tiling)


def composite(chunk: Chunk) -> None:
    """Keep the untouched pixels exactly (the VAE round trip would blur them)."""
    job = chunk.job
    mixed = composite_pixels(chunk.rgba.astype(np.float64), job.init_rgba[None], job.mask[None, :, :, None])
    chunk.rgba = np.rint(mixed).astype(np.uint8)


def encode(chunk: Chunk) -> None:
    plan = chunk.job.plan
    texts = chunk.metadata or [None] * len(chunk.indices)
    chunk.encoded = [images.encode(rgba, plan.output_format, plan.output_quality, text)
                     for rgba, text in zip(chunk.rgba, texts, strict=True)]


def report(chunk: Chunk) -> None:
    job = chunk.job
    for row in range(len(chunk.indices)):
        job.reporter.check()
        blob, mime = chunk.encoded[row]
        job.reporter.artifact(artifact(chunk, row, mime), blob)
        job.made += 1
    job.reporter.progress(job.made * job.plan.steps_per_image, job.steps_total, job.made)


def provenance_of(chunk: Chunk, row: int) -> dict[str, Any]:
    return provenance(chunk.job.plan, chunk.indices[row])


def artifact(chunk: Chunk, row: int, mime: str) -> ev.Artifact:
    index = chunk.indices[row]
    prompt_index, _, seed = chunk.job.plan.image(index)
    rgba = chunk.rgba[row]
    return ev.Artifact(
        index=index,
        mime_type=mime,
        width=int(rgba.shape[1]),
        height=int(rgba.shape[0]),
        seed=seed,
        finish_reason=FinishReason.COMPLETED,
        provenance=ev.Provenance(**provenance_of(chunk, row)),
        prompt_index=prompt_index,
        content_credentials=base64.b64encode(chunk.credentials[row]).decode() if chunk.credentials else "",
    )
