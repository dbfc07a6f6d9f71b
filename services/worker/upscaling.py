"""The upscale stage: the chunk's images through the x4 upscaler (docs/ARCHITECTURE.md, "Upscaling").

In a cascade it runs on the base model's final images, after decoding (and inpainting's
composite, which keeps the unmasked pixels exactly at the base size); in an UPSCALE job it is
the only model stage, on the uploaded image, once per seed. Each image's super-resolution noise
comes from its own seed on the streams diffusion/upscale.py reserves, so an image upscales the
same alone, in a batch or beside other jobs, and a provenance sent back remakes it bit for bit.

The upscaler's network calls go through the model's shared batching denoiser (its rows are
tiles: ``cond`` carries the upsampled input and the augmentation level), held in a session
only while this stage samples, so other jobs never wait for a job that is elsewhere. Progress
counts on from the base sampler's steps (one per upscaler step and image), and previews of the
high-resolution estimate follow ``preview_every_steps`` on that count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from diffusion.upscale import UpscaleParams, upscale_fast
from diffusion.upscale import upscale as sample_upscale
from services.common.plan import JobKind
from services.worker import batching, images
from services.worker.batching import NonFiniteOutput
from services.worker.runtime import DenoiseFn, UpscalerRuntime, sr_denoise
from services.worker.stages import Chunk, JobContext


@dataclass(frozen=True)
class Upscaler:
    """A loaded upscaler as a job uses it: its runtime (identity, the one-pass network) and its
    shared denoiser ``denoise(x, sigma, {"low_res", "aug_level"}) -> x0`` of the residual."""

    runtime: UpscalerRuntime
    denoise: DenoiseFn


def _low_res(chunk: Chunk) -> np.ndarray:
    """What the chunk upscales: its decoded images, or an UPSCALE job's upload once per image."""
    job = chunk.job
    if job.plan.kind == JobKind.UPSCALE:
        return np.repeat(job.upscale_rgba[None], len(chunk.indices), axis=0)
    return chunk.rgba


def _on_step(chunk: Chunk):
    job, indices = chunk.job, chunk.indices
    plan = job.plan
    made = job.made
    # Every image of the chunk has run its sampler's steps; the upscaler's count on from there.
    before = made * plan.steps_per_image + plan.steps_run * len(indices)

    def on_step(step: int, total: int, preview: np.ndarray) -> None:
        job.reporter.check()
        job.reporter.progress(before + (step + 1) * len(indices), job.steps_total, made)
        shown = plan.steps_run + step + 1  # the image's own step count, base steps included
        every = plan.preview_every_steps
        if every and shown % every == 0 and step + 1 < total:
            _send_previews(job, indices, shown, preview)

    return on_step


def _send_previews(job: JobContext, indices: list[int], step: int, estimate: np.ndarray) -> None:
    rgb = images.premultiplied_rgb8(estimate)
    for row, index in enumerate(indices):
        jpeg, w, h = images.preview_jpeg(rgb[row], job.preview_size)
        job.reporter.preview(index, step, jpeg, w, h)


def upscale(chunk: Chunk) -> None:
    job = chunk.job
    u = job.plan.upscale
    lr = images.premultiplied(_low_res(chunk))
    params = UpscaleParams.from_spec(u)  # the plan holds every constant the sampler takes
    started = time.perf_counter()
    if u.fast:
        hr = upscale_fast(lr, job.upscaler.runtime.fast, params)
        made, n = job.made, len(chunk.indices)
        job.reporter.progress(made * job.plan.steps_per_image + (job.plan.steps_run + 1) * n, job.steps_total, made)
    else:
        seeds = [seed for _, _, seed in chunk.picks]
        with batching.sampling(job.upscaler.denoise):
            hr = sample_upscale(lr, sr_denoise(job.upscaler.denoise), params, steps=u.steps, seeds=seeds,
                                callback=_on_step(chunk))
    job.upscale_seconds += time.perf_counter() - started
    if not np.isfinite(hr).all():
        raise NonFiniteOutput("the upscaler produced non-finite pixels")
    chunk.rgba = images.straight_rgba8(hr)
