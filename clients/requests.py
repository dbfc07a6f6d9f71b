"""Build a `GenerateRequest` from plain Python values (names, seconds, paths)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import types_pb2

FORMATS = {"png": 1, "jpeg": 2, "jpg": 2, "webp": 3, "raw": 4, "rgba": 4, "raw_rgba8": 4}
PRIORITIES = {"interactive": types_pb2.PRIORITY_INTERACTIVE, "batch": types_pb2.PRIORITY_BATCH}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "application/x-atelier-rgba8": "rgba"}


def sampler_value(sampler: str | int | None) -> int:
    if sampler is None or sampler == "":
        return types_pb2.SAMPLER_UNSPECIFIED
    if isinstance(sampler, int):
        return sampler
    return types_pb2.Sampler.Value("SAMPLER_" + sampler.upper().replace("-", "_").replace("+", "P"))


def sampler_name(value: int) -> str:
    return types_pb2.Sampler.Name(value).removeprefix("SAMPLER_").lower()


def _image(value: bytes | str | Path | None) -> types_pb2.InputImage | None:
    if value is None:
        return None
    data = value if isinstance(value, bytes) else Path(value).read_bytes()
    return types_pb2.InputImage(data=data)


def _timestamp(deadline: float | datetime) -> float:
    """An absolute time: a datetime, or seconds from now when below 10^9 (a Unix time otherwise)."""
    if isinstance(deadline, datetime):
        return deadline.timestamp()
    return time.time() + deadline if deadline < 1e9 else float(deadline)


def _webhook(hook: Mapping[str, Any]) -> gen.JobWebhook:
    events = [gen.WebhookEvent.Value("WEBHOOK_EVENT_" + e.upper()) if isinstance(e, str) else e
              for e in hook.get("events", ())]
    return gen.JobWebhook(url=hook["url"], events=events,
                          progress_interval_seconds=hook.get("progress_interval_seconds", 0))


def build_request(
    prompt: str = "",
    *,
    negative_prompt: str = "",
    style: str = "",
    model: str = "",
    model_version: str = "",
    width: int = 0,
    height: int = 0,
    steps: int = 0,
    sampler: str | int | None = None,
    guidance_scale: float | None = None,
    guidance_rescale: float = 0.0,
    eta: float | None = None,
    seeds: Iterable[int] = (),
    count: int = 0,
    init_image: bytes | str | Path | None = None,
    strength: float = 0.0,
    mask: bytes | str | Path | None = None,
    tiling: bool = False,
    output_format: str | int = "png",
    output_quality: int = 0,
    priority: str | int | None = None,
    deadline: float | datetime | None = None,
    preview_every_steps: int = 0,
    labels: Mapping[str, str] | None = None,
    request_id: str = "",
    cancel_on_disconnect: bool = False,
    prompts: Iterable[str | tuple[str, str, str] | Mapping[str, str]] = (),
    upscale: int = 0,
    upscale_steps: int = 0,
    upscaler: str = "",
    upscaler_version: str = "",
    upscale_fast: bool = False,
    upscale_image: bytes | str | Path | None = None,
    dataset: Mapping[str, Any] | None = None,
    webhook: Mapping[str, Any] | None = None,
) -> gen.GenerateRequest:
    """Every keyword is the GenerateRequest field of the same name (see the .proto); images are
    bytes or a path."""
    req = gen.GenerateRequest(
        request_id=request_id,
        model=model,
        model_version=model_version,
        prompt=prompt,
        negative_prompt=negative_prompt,
        style=style,
        width=width,
        height=height,
        steps=steps,
        sampler=sampler_value(sampler),
        guidance_rescale=guidance_rescale,
        seeds=list(seeds),
        count=count,
        strength=strength,
        tiling=tiling,
        output_format=FORMATS[output_format.lower()] if isinstance(output_format, str) else output_format,
        output_quality=output_quality,
        # None: unspecified, which the service takes as interactive (a dataset job: batch).
        priority=PRIORITIES[priority.lower()] if isinstance(priority, str) else (priority or 0),
        preview_every_steps=preview_every_steps,
        labels=dict(labels or {}),
        cancel_on_disconnect=cancel_on_disconnect,
        upscale=upscale,
        upscale_steps=upscale_steps,
        upscaler=upscaler,
        upscaler_version=upscaler_version,
        upscale_fast=upscale_fast,
    )
    if guidance_scale is not None:
        req.guidance_scale = guidance_scale
    if eta is not None:
        req.eta = eta
    if (image := _image(init_image)) is not None:
        req.init_image.CopyFrom(image)
    if (image := _image(mask)) is not None:
        req.mask.CopyFrom(image)
    if (image := _image(upscale_image)) is not None:
        req.upscale_image.CopyFrom(image)
    if dataset is not None:  # output, shard_size, styles (DatasetSpec)
        req.dataset.CopyFrom(gen.DatasetSpec(**dataset))
    if webhook is not None:  # url, events (names: "started", ... or WebhookEvent numbers), progress_interval_seconds
        req.webhook.CopyFrom(_webhook(webhook))
    if deadline is not None:
        req.deadline.FromNanoseconds(int(_timestamp(deadline) * 1e9))
    for p in prompts:
        if isinstance(p, str):
            req.prompts.add(prompt=p)
        elif isinstance(p, Mapping):
            req.prompts.add(**p)
        else:
            req.prompts.add(prompt=p[0], negative_prompt=p[1], style=p[2])
    return req
