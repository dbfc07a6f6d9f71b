"""An artifact's provenance: read off the job's plan, never re-derived.

Every value is the one that ran, so a provenance sent back as a request (its fields are
the request's) makes the same image bit for bit (tests/services/test_provenance_replay.py).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from services.common.plan import JobPlan


def software_version() -> str:
    try:
        return metadata.version("atelier")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def provenance(plan: JobPlan, index: int) -> dict[str, Any]:
    """Image ``index``'s provenance (the fields of `atelier.v1.Provenance`)."""
    _, prompt, seed = plan.image(index)
    return {
        "model_name": plan.model,
        "model_version": plan.model_version,
        "model_sha256": plan.model_sha256,
        "sampler": plan.sampler,
        "steps": plan.steps,  # of the schedule: with `strength` it reproduces the image
        "steps_run": plan.steps_run,
        "guidance_scale": plan.guidance_scale,
        "seed": seed,
        "prompt": prompt.prompt,
        "negative_prompt": prompt.negative_prompt,
        "style": prompt.style,
        "width": plan.width,
        "height": plan.height,
        "strength": plan.strength,
        "tiling": plan.tiling,
        "init_image_sha256": plan.init_image_sha256,
        "mask_sha256": plan.mask_sha256,
        "software_version": software_version(),
        "guidance_rescale": plan.guidance_rescale,
        "eta": float(plan.sampler_options.get("eta", 0.0)),
        **_upscale(plan),
    }


def _upscale(plan: JobPlan) -> dict[str, Any]:
    """The upscaler's part: which version, how many steps, which network (all empty without one)."""
    u = plan.upscale
    if u is None:
        return {"upscale": 0, "upscaler_name": "", "upscaler_version": "", "upscaler_sha256": "", "upscale_steps": 0,
                "upscale_fast": False, "upscale_image_sha256": ""}
    return {"upscale": u.factor, "upscaler_name": u.model, "upscaler_version": u.version, "upscaler_sha256": u.sha256,
            "upscale_steps": u.steps, "upscale_fast": u.fast, "upscale_image_sha256": plan.upscale_image_sha256}
