"""Every rule a job must pass before it is queued, as plain Python.

:func:`validate` returns one `(field, description)` pair per bad field, all at once, so
a client fixes its request in one round trip; the servicer turns the list into
INVALID_ARGUMENT with `google.rpc.BadRequest` field violations. Field paths are the
proto's (`width`, `init_image.data`, `prompts[3].style`).
"""

from __future__ import annotations

import math
import re

from diffusion.sampler_catalog import CATALOG
from services.common.jobs import JobSpec
from services.gateway import datasets, upscaling
from services.gateway.catalog import ModelCatalog, ModelEntry
from services.gateway.images import upload_header
from services.gateway.limits import Limits, Violation

MAX_LABELS = 16
MAX_LABEL_CHARS = 128
MAX_REQUEST_ID_CHARS = 128
MAX_PREVIEW_EVERY = 1000

# An event id (JobEvent.id) is a Redis stream id: `<ms>-<seq>` (or `<ms>`), each a 64-bit
# unsigned number. ASCII digits only: str.isdigit() also takes other scripts' digits.
_EVENT_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_STREAM_ID_PART_MAX = 2**64 - 1


def validate(
    spec: JobSpec, *, bulk: bool, catalog: ModelCatalog, limits: Limits, now: float
) -> list[Violation]:
    out: list[Violation] = []
    upscale_job = spec.upscale_image is not None
    out += _not_for_upscale_jobs(spec, bulk) if upscale_job else _prompts(spec, bulk, limits)
    out += _images_count(spec, limits)
    model = None if upscale_job else _model(spec, catalog, out)
    out += _size(spec, model, limits) if not upscale_job else []
    out += _sampling(spec, model, limits, bulk)
    out += _uploads(spec, model, limits)
    out += upscaling.violations(spec, model, catalog, limits)
    out += datasets.violations(spec, model, limits) if spec.dataset is not None else []
    out += _output(spec, model, now)
    out += _labels(spec)
    return out


def _prompts(spec: JobSpec, bulk: bool, limits: Limits) -> list[Violation]:
    out: list[Violation] = []
    most = limits.max_dataset_prompts if spec.dataset is not None else limits.max_bulk_prompts
    if bulk and len(spec.prompts) > most:
        out.append(("prompts", f"{len(spec.prompts)} prompts is over the limit of {most}"))
        return out
    for i, p in enumerate(spec.prompts):
        where = f"prompts[{i}]." if bulk else ""
        if not p.prompt.strip():
            out.append((f"{where}prompt", "must not be empty"))
        for name in ("prompt", "negative_prompt"):
            text = getattr(p, name)
            if len(text) > limits.max_prompt_chars:
                out.append((f"{where}{name}", f"{len(text)} characters is over the limit of {limits.max_prompt_chars}"))
    return out


def _images_count(spec: JobSpec, limits: Limits) -> list[Violation]:
    most, what = ((limits.max_dataset_images, "a dataset job") if spec.dataset is not None
                  else (limits.max_images_per_job, "a job"))
    if len(spec.seeds) > most:
        return [("seeds", f"{len(spec.seeds)} seeds is over the limit of {most} images {what}")]
    if spec.images_total > most:
        styles = f" x {len(spec.dataset.styles)} styles" if spec.dataset is not None and spec.dataset.styles else ""
        return [(
            "prompts",
            f"{len(spec.prompts)} prompts{styles} x {len(spec.seeds)} images = {spec.images_total} images "
            f"is over the limit of {most} {what}",
        )]
    return []


# What an UPSCALE job (upscale_image) leaves empty: it runs no base model and no sampler.
_BASE_FIELDS = ("model", "model_version", "steps", "sampler", "tiling")  # strength: _uploads says it


def _not_for_upscale_jobs(spec: JobSpec, bulk: bool) -> list[Violation]:
    why = "is not used by an UPSCALE job (upscale_image): it runs only the upscaler"
    out: list[Violation] = [("prompts", why)] if bulk else []
    prompt = spec.prompts[0]
    out += [(name, why) for name in ("prompt", "negative_prompt", "style") if not bulk and getattr(prompt, name)]
    out += [(name, why) for name in _BASE_FIELDS if getattr(spec, name)]
    out += [(name, why) for name in ("init_image", "mask") if getattr(spec, name) is not None]
    return out


def _model(spec: JobSpec, catalog: ModelCatalog, out: list[Violation]) -> ModelEntry | None:
    entry = catalog.resolve(spec.model, spec.model_version)
    if entry is not None and entry.is_upscaler:
        factor = entry.manifest.upscaler.factor
        out.append(("model", f"{entry.name} is an upscaler: name it in `upscaler`, with upscale {factor} "
                             "or upscale_image"))
        return None
    if entry is not None:
        return entry
    if not catalog.has_model(spec.model):
        known = ", ".join(sorted({e.name for e in catalog.entries()})) or "none"
        out.append(("model", f"unknown model {spec.model or catalog.default_model!r} (known: {known})"))
    else:
        versions = [e.version for e in catalog.entries() if e.name == (spec.model or catalog.default_model)]
        out.append(("model_version", f"unknown version {spec.model_version!r} (known: {', '.join(versions)})"))
    return None


def _size(spec: JobSpec, model: ModelEntry | None, limits: Limits) -> list[Violation]:
    out: list[Violation] = []
    factor = model.size_multiple if model else 1
    max_side = min(limits.max_side, model.max_size) if model else limits.max_side
    for name in ("width", "height"):
        value = getattr(spec, name)
        if value == 0:
            continue  # the model's native size
        if value > limits.max_side:
            out.append((name, f"{value} is over the limit of {limits.max_side} pixels"))
        elif model and not model.other_sizes:
            native = getattr(model.manifest.image, name)
            if value != native:
                out.append((name, f"{name} {value} is not supported: {model.supported_range()}"))
        elif model and not model.min_size <= value <= max_side:
            out.append((name, f"{name} {value} is not supported: {model.supported_range()}"))
        elif value % factor:
            out.append((name, f"{value} is not a multiple of {factor}, the model's size step"))
    return out


def _finite_in(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high


def _sampling(spec: JobSpec, model: ModelEntry | None, limits: Limits, bulk: bool) -> list[Violation]:
    out: list[Violation] = []
    if spec.steps > limits.max_steps:
        out.append(("steps", f"{spec.steps} is over the limit of {limits.max_steps}"))
    if model and spec.sampler and spec.sampler not in model.samplers:
        out.append(("sampler", _sampler_problem(spec.sampler, model)))
    if spec.guidance_scale is not None and not _finite_in(spec.guidance_scale, 0.0, limits.max_guidance_scale):
        out.append(("guidance_scale", f"must be between 0 and {limits.max_guidance_scale}"))
    if not _finite_in(spec.guidance_rescale, 0.0, 1.0):
        out.append(("guidance_rescale", "must be between 0 and 1"))
    if spec.eta is not None and not _finite_in(spec.eta, 0.0, 1.0):
        out.append(("eta", "must be between 0 and 1"))
    if spec.preview_every_steps > MAX_PREVIEW_EVERY:
        out.append(("preview_every_steps", f"must be at most {MAX_PREVIEW_EVERY}"))
    if model:
        for i, p in enumerate(spec.prompts):
            if p.style and p.style not in model.styles:
                where = f"prompts[{i}].style" if bulk else "style"
                styles = ", ".join(model.styles) or "none"
                out.append((where, f"unknown style {p.style!r} for model {model.key} (known: {styles})"))
    if model and spec.tiling and not model.supports_tiling:
        out.append(("tiling", f"model {model.key} cannot make seamless tiles"))
    if model and model.manifest.unet.guidance_input:
        out += _built_in_guidance(spec, model, bulk)
    return out


def _sampler_problem(sampler: str, model: ModelEntry) -> str:
    known = ", ".join(model.samplers)
    if sampler in CATALOG and CATALOG[sampler].consistency:
        return (f"{sampler!r} is a consistency sampler: it draws only with a consistency-distilled (fast) model, "
                f"and {model.key} is not one (its samplers: {known})")
    if sampler in CATALOG and model.fast:
        return (f"{sampler!r} cannot draw with {model.key}: a consistency-distilled (fast) model draws with a "
                f"consistency sampler only ({known})")
    return f"{sampler!r} is not run for model {model.key} (its samplers: {known})"


def _built_in_guidance(spec: JobSpec, model: ModelEntry, bulk: bool) -> list[Violation]:
    """A model whose network takes the guidance scale has no unconditional branch to steer with."""
    out: list[Violation] = []
    low, high = model.manifest.unet.guidance_range or (0.0, math.inf)
    w = spec.guidance_scale
    if w is not None and math.isfinite(w) and not low <= w <= high:
        out.append(("guidance_scale", f"model {model.key} has guidance built in, learned for scales {low:g} to "
                                      f"{high:g}; {spec.guidance_scale:g} is outside"))
    if spec.guidance_rescale:
        out.append(("guidance_rescale", f"model {model.key} has guidance built in: there is no unconditional "
                                        "branch to rescale against"))
    for i, p in enumerate(spec.prompts):
        if p.negative_prompt:
            where = f"prompts[{i}].negative_prompt" if bulk else "negative_prompt"
            out.append((where, f"model {model.key} has guidance built in: it has no unconditional branch for a "
                               "negative prompt to replace"))
    return out


def _uploads(spec: JobSpec, model: ModelEntry | None, limits: Limits) -> list[Violation]:
    out: list[Violation] = []
    init = upload_header("init_image.data", spec.init_image, limits, out) if spec.init_image else None
    mask = upload_header("mask.data", spec.mask, limits, out) if spec.mask else None
    if spec.init_image:
        if model and not model.supports_init_image:
            out.append(("init_image", f"model {model.key} has no image encoder (image-to-image)"))
        if not _finite_in(spec.strength, 0.0, 1.0) or spec.strength == 0.0:
            out.append(("strength", "must be in (0, 1] with an init image"))
    elif spec.strength != 0.0:
        out.append(("strength", "is only used with init_image"))
    if spec.mask and not spec.init_image:
        out.append(("mask", "needs init_image"))
    if init and mask and (mask.width, mask.height) != (init.width, init.height):
        out_size = _output_size(spec, model)
        if (mask.width, mask.height) != out_size:
            out.append((
                "mask.data",
                f"{mask.width}x{mask.height} differs from the init image's {init.width}x{init.height}",
            ))
    return out


def _output_size(spec: JobSpec, model: ModelEntry | None) -> tuple[int, int] | None:
    if model is None:
        return None
    return (spec.width or model.manifest.image.width, spec.height or model.manifest.image.height)


def _output(spec: JobSpec, model: ModelEntry | None, now: float) -> list[Violation]:
    out: list[Violation] = []
    if spec.output_quality > 100:
        out.append(("output_quality", "must be between 1 and 100 (0: 90)"))
    if spec.deadline is not None and spec.deadline <= now:
        out.append(("deadline", "has already passed"))
    if len(spec.request_id) > MAX_REQUEST_ID_CHARS:
        out.append(("request_id", f"must be at most {MAX_REQUEST_ID_CHARS} characters"))
    return out


def _labels(spec: JobSpec) -> list[Violation]:
    out: list[Violation] = []
    if len(spec.labels) > MAX_LABELS:
        out.append(("labels", f"{len(spec.labels)} labels is over the limit of {MAX_LABELS}"))
    for key, value in spec.labels.items():
        if not key or len(key) > MAX_LABEL_CHARS:
            out.append((f"labels[{key[:32]!r}]", f"keys must be 1 to {MAX_LABEL_CHARS} characters"))
        if len(value) > MAX_LABEL_CHARS:
            out.append((f"labels[{key[:32]!r}]", f"values must be at most {MAX_LABEL_CHARS} characters"))
    return out


def event_id(field: str, value: str) -> list[Violation]:
    """A position in a job's event log, as Watch's `after_event_id` takes it ("" is the start)."""
    shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
    match = _EVENT_ID.fullmatch(value)
    if match is None:
        return [(field, f"{shown} is not an event id (JobEvent.id, like '1718000000000-0')")]
    ms, seq = int(match[1]), int(match[2] or 0)
    if ms > _STREAM_ID_PART_MAX or seq > _STREAM_ID_PART_MAX:
        return [(field, f"{shown} is not an event id: each part is at most {_STREAM_ID_PART_MAX}")]
    if ms == seq == _STREAM_ID_PART_MAX:
        return [(field, f"{shown} is the last possible event id: no event can follow it")]
    return []
