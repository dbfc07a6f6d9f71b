"""One job's images: text-to-image, image-to-image, inpainting, seamless tiles, bulk prompts.

`generate` resolves the job against the model, then samples its images in chunks (each
chunk is one sampler run over up to `rows_per_chunk` images, so a bulk job of many
prompts streams its artifacts as it goes and never holds everything at once). It talks
to the outside only through a :class:`JobReporter` (events, cancellation) and the
model runtime; the job store and Celery never appear here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

import numpy as np

from diffusion.editing import Inpaint, composite, img2img_start, latent_mask
from diffusion.guidance import ClassifierFreeGuidance
from diffusion.noise import SeededNoise, initial_noise
from diffusion.sampler_catalog import effective_options
from diffusion.samplers import SAMPLERS, SamplerStep
from services.common.jobs import JobRecord, JobSpec
from services.worker import images
from services.worker.batching import NonFiniteOutput
from services.worker.runtime import Cond, DenoiseFn, ModelInfo, ModelRuntime


class InvalidJob(ValueError):
    """The job cannot be run as asked (fails with INVALID_INPUT)."""


class JobReporter(Protocol):
    """Where the pipeline sends what happens, and asks whether to go on."""

    def check(self) -> None:
        """Raise to stop the job (cancelled, deadline passed, time limit)."""

    def progress(self, steps_done: int, steps_total: int, images_done: int) -> None: ...

    def preview(self, index: int, step: int, jpeg: bytes, width: int, height: int) -> None: ...

    def artifact(self, data: dict[str, Any], blob: bytes) -> None: ...


@dataclass(frozen=True)
class Plan:
    """A job resolved against its model: every default filled in."""

    width: int
    height: int
    steps: int
    sampler: str
    guidance_scale: float
    latent_shape: tuple[int, int, int]
    sigmas: np.ndarray  # the part of the schedule that runs (img2img: its tail)
    strength: float

    @property
    def steps_run(self) -> int:
        return len(self.sigmas) - 1


def software_version() -> str:
    try:
        return metadata.version("atelier")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def plan(spec: JobSpec, info: ModelInfo, runtime: ModelRuntime) -> Plan:
    width, height = spec.width or info.width, spec.height or info.height
    if width % info.latent_factor or height % info.latent_factor:
        raise InvalidJob(f"width and height must be multiples of {info.latent_factor}, got {width}x{height}")
    if (width, height) != (info.width, info.height) and not info.dynamic_size:
        raise InvalidJob(f"model {info.name} makes only {info.width}x{info.height} images")
    sampler = spec.sampler or info.default_sampler
    if sampler not in SAMPLERS:
        raise InvalidJob(f"unknown sampler {sampler!r}")
    if spec.tiling and not info.supports_tiling:
        raise InvalidJob(f"model {info.name} cannot make seamless tiles")
    if spec.init_image and not info.supports_init_image:
        raise InvalidJob(f"model {info.name} has no image encoder")
    if spec.mask and not spec.init_image:
        raise InvalidJob("a mask needs an init image")
    steps = spec.steps or info.default_steps
    guidance = info.default_guidance_scale if spec.guidance_scale is None else float(spec.guidance_scale)
    sigmas = np.asarray(runtime.sigmas(steps), dtype=np.float64)
    strength = 0.0
    if spec.init_image:
        # Inpainting without a strength repaints the masked area from pure noise.
        strength = spec.strength or (1.0 if spec.mask else 0.0)
        if not 0.0 < strength <= 1.0:
            raise InvalidJob("strength must be in (0, 1] with an init image")
    return Plan(width, height, steps, sampler, guidance, info.latent_shape(width, height), sigmas, strength)


def _sampler_options(sampler: str, spec: JobSpec) -> dict[str, Any]:
    """Every option of the sampler at the value this job runs it with (provenance records them)."""
    return effective_options(sampler, eta=None if spec.eta is None else float(spec.eta))


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
    spec, info = job.spec, runtime.info
    p = plan(spec, info, runtime)
    denoise = denoiser(spec.tiling, p.latent_shape)
    init_rgba = mask = None
    if spec.init_image:
        try:
            init_rgba = images.load_rgba(spec.init_image, p.width, p.height, max_upload_pixels)
            if spec.mask:
                mask = images.load_mask(spec.mask, p.width, p.height, max_upload_pixels)
        except images.BadImage as err:
            raise InvalidJob(str(err)) from None
    guided_pairs = 2 if p.guidance_scale != 1.0 else 1
    chunk = max(1, rows_per_chunk // guided_pairs)
    todo = [i for i in range(spec.images_total) if i not in skip]
    # A batching denoiser learns that this job is active, so it never waits for it in vain.
    session = getattr(denoise, "session", None)
    with session() if session is not None else contextlib.nullcontext():
        return _generate_chunks(spec, p, info, runtime, denoise, reporter, todo, init_rgba, mask, chunk, preview_size)


def _generate_chunks(spec, p, info, runtime, denoise, reporter, todo, init_rgba, mask, chunk, preview_size) -> int:
    steps_total = len(todo) * p.steps_run
    texts = TextCache(runtime)
    made = 0
    reporter.check()
    reporter.progress(0, steps_total, 0)
    for start in range(0, len(todo), chunk):
        indices = todo[start : start + chunk]
        done_before = made * p.steps_run

        def on_step(step: SamplerStep, indices=indices, done_before=done_before, made=made) -> None:
            reporter.check()
            reporter.progress(done_before + (step.i + 1) * len(indices), steps_total, made)
            every = spec.preview_every_steps
            if every and (step.i + 1) % every == 0 and step.i + 1 < step.steps:
                _send_previews(runtime, reporter, indices, step, preview_size)

        latents = _sample_chunk(spec, p, runtime, denoise, texts, indices, init_rgba, mask, on_step)
        rgba = runtime.decode(latents.astype(np.float32), tiling=spec.tiling)
        if init_rgba is not None and mask is not None:
            # Keep the untouched pixels exactly (the VAE round trip would blur them).
            rgba = np.rint(composite(rgba.astype(np.float64), init_rgba[None], mask[None, :, :, None]))
            rgba = rgba.astype(np.uint8)
        for row, index in enumerate(indices):
            reporter.check()
            blob, mime = images.encode(rgba[row], spec.output_format, spec.output_quality)
            reporter.artifact(_artifact(spec, p, info, index, mime, rgba[row]), blob)
            made += 1
        reporter.progress(made * p.steps_run, steps_total, made)
    return made


def _sample_chunk(
    spec: JobSpec,
    p: Plan,
    runtime: ModelRuntime,
    denoise: DenoiseFn,
    texts: TextCache,
    indices: list[int],
    init_rgba: np.ndarray | None,
    mask: np.ndarray | None,
    on_step: Callable[[SamplerStep], None],
) -> np.ndarray:
    picks = [spec.image(i) for i in indices]  # (prompt_index, prompt, seed)
    seeds = tuple(seed for _, _, seed in picks)
    cond = texts.encode([(pr.prompt, pr.style) for _, pr, _ in picks])
    uncond = texts.encode([(pr.negative_prompt, pr.style) for _, pr, _ in picks])
    model = ClassifierFreeGuidance(denoise, cond, uncond, p.guidance_scale, spec.guidance_rescale)
    sample_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] = model
    noise0 = initial_noise(seeds, p.latent_shape, dtype=np.float32)
    sigmas = p.sigmas
    if init_rgba is None:
        x = noise0 * np.float32(sigmas[0])
    else:
        known = runtime.encode(np.repeat(init_rgba[None], len(indices), axis=0)).astype(np.float32)
        x, sigmas = img2img_start(known, sigmas, p.strength, noise0)
        if mask is not None:
            m = latent_mask(mask, p.latent_shape[1:]).astype(np.float32)
            sample_fn = Inpaint(model, known, m, noise0)
    noise = SeededNoise(seeds, p.latent_shape, "float32")
    sampler = SAMPLERS[p.sampler]
    options = _sampler_options(p.sampler, spec)
    x = sampler(sample_fn, x.astype(np.float32), sigmas, noise=noise, callback=on_step, **options)
    if not np.isfinite(x).all():
        raise NonFiniteOutput("the sampler produced non-finite latents")
    return x


def _send_previews(runtime: ModelRuntime, reporter: JobReporter, indices, step: SamplerStep, size: int) -> None:
    rgb = runtime.preview(np.asarray(step.denoised, dtype=np.float32))
    for row, index in enumerate(indices):
        jpeg, w, h = images.preview_jpeg(rgb[row], size)
        reporter.preview(index, step.i + 1, jpeg, w, h)


def _artifact(spec: JobSpec, p: Plan, info: ModelInfo, index: int, mime: str, rgba: np.ndarray) -> dict[str, Any]:
    prompt_index, prompt, seed = spec.image(index)
    provenance = {
        "model_name": info.name,
        "model_version": info.version,
        "model_sha256": info.sha256,
        "sampler": p.sampler,
        "steps": p.steps,  # as requested: with `strength` it reproduces the image
        "guidance_scale": p.guidance_scale,
        "seed": seed,
        "prompt": prompt.prompt,
        "negative_prompt": prompt.negative_prompt,
        "style": prompt.style,
        "width": p.width,
        "height": p.height,
        "strength": p.strength,
        "tiling": spec.tiling,
        "init_image_sha256": spec.init_image_sha256,
        "mask_sha256": spec.mask_sha256,
        "software_version": software_version(),
        "guidance_rescale": spec.guidance_rescale,
        # The eta that ran (a stochastic sampler's default is 1.0), so replaying this reproduces it.
        "eta": float(_sampler_options(p.sampler, spec).get("eta", 0.0)),
    }
    return {
        "index": index,
        "mime_type": mime,
        "width": int(rgba.shape[1]),
        "height": int(rgba.shape[0]),
        "seed": seed,
        "finish_reason": "COMPLETED",
        "provenance": provenance,
        "prompt_index": prompt_index,
    }
