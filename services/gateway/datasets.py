"""The rules of a dataset job's request (GenerateRequest.dataset), at the gateway.

A dataset job is text-to-image at scale written to a store: it has no uploads, no upscaling and
no previews, makes PNG files, and its limits are the dataset ones (ATELIER_MAX_DATASET_IMAGES,
ATELIER_MAX_DATASET_PROMPTS) instead of a job's. Its output must name a location a worker may
write (services/common/datasets.py, ``parse_output``). Field paths are the proto's.
"""

from __future__ import annotations

from services.common.datasets import MAX_SHARD_SIZE, BadOutput, parse_output
from services.common.jobs import JobSpec, OutputFormat
from services.gateway.catalog import ModelEntry
from services.gateway.limits import Limits, Violation

# What a dataset job leaves empty, and why each is refused rather than ignored.
_UNUSED = {
    "init_image": "a dataset job is text-to-image: no init image",
    "mask": "a dataset job is text-to-image: no mask",
    "upscale_image": "a dataset job is text-to-image: no image to upscale",
    "upscale": "a dataset job does not upscale (its images are the base model's)",
    "preview_every_steps": "a dataset job sends no previews",
}


def violations(spec: JobSpec, model: ModelEntry | None, limits: Limits) -> list[Violation]:
    d = spec.dataset
    out: list[Violation] = []
    try:
        parse_output(d.output)
    except BadOutput as err:
        out.append(("dataset.output", str(err)))
    if d.shard_size > MAX_SHARD_SIZE:
        out.append(("dataset.shard_size", f"{d.shard_size} is over the limit of {MAX_SHARD_SIZE} images a shard"))
    for name, why in _UNUSED.items():
        if getattr(spec, name):
            out.append((name, why))
    if spec.output_format != OutputFormat.PNG:
        out.append(("output_format", f"a dataset's images are PNG files; {spec.output_format} is not"))
    if len(set(d.styles)) != len(d.styles):
        out.append(("dataset.styles", "names a style twice"))
    for j, style in enumerate(d.styles):
        if model and style not in model.styles:
            out.append((f"dataset.styles[{j}]", f"unknown style {style!r} for model {model.key} "
                                                f"(known: {', '.join(model.styles) or 'none'})"))
    if d.styles:
        out += [(f"prompts[{i}].style", "must be empty when dataset.styles is set: each prompt is made in those")
                for i, p in enumerate(spec.prompts) if p.style]
    return out
