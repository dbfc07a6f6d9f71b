"""The metadata stage: every image file carries its provenance.

Two text fields a row: ``parameters``, the one-line form AUTOMATIC1111's web UI writes and
reads back ("prompt / Negative prompt: ... / Steps: 20, Sampler: Euler a, ..."), and
``provenance``, the artifact's full provenance as JSON. services/worker/images.py writes them
as PNG text chunks, or as an XMP packet in JPEG and WEBP. This stage is the worked example of
adding one (docs/ARCHITECTURE.md, "Where a new stage goes").
"""

from __future__ import annotations

import json
from typing import Any

from services.worker.stages import Chunk, provenance_of

# AUTOMATIC1111's names for the samplers it shares with Atelier; others keep Atelier's name.
A1111_SAMPLERS = {
    "ddim": "DDIM",
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "unipc": "UniPC",
    "lcm": "LCM",
}


def parameters(p: dict[str, Any]) -> str:
    """The A1111 ``parameters`` text of provenance ``p``: a cascade's upscaler as A1111's hires fix
    writes it ("Hires upscale: 4, Hires steps: ..."), an UPSCALE job's as its extras tab does
    ("Postprocess upscale by: 4, Postprocess upscaler: ...")."""
    if p["upscale"] and not p["model_name"]:
        return _upscale_only(p)
    lines = [p["prompt"]]
    if p["negative_prompt"]:
        lines.append(f"Negative prompt: {p['negative_prompt']}")
    fields = {
        "Steps": p["steps"],
        "Sampler": A1111_SAMPLERS.get(p["sampler"], p["sampler"]),
        "CFG scale": p["guidance_scale"],
        "Seed": p["seed"],
        "Size": f"{p['width']}x{p['height']}",
        "Model hash": p["model_sha256"][:10],
        "Model": f"{p['model_name']}/{p['model_version']}",
    }
    if p["strength"]:
        fields["Denoising strength"] = p["strength"]
    if p["tiling"]:
        fields["Tiling"] = "True"
    fields["Eta"] = p["eta"]
    if p["style"]:
        fields["Style"] = p["style"]
    if p["upscale"]:
        fields["Hires upscale"] = p["upscale"]
        fields["Hires steps"] = p["upscale_steps"]
        fields["Hires upscaler"] = _upscaler(p)
    fields["Version"] = f"atelier {p['software_version']}"
    lines.append(", ".join(f"{k}: {_quoted(v)}" for k, v in fields.items()))
    return "\n".join(lines)


def _upscaler(p: dict[str, Any]) -> str:
    return f"{p['upscaler_name']}/{p['upscaler_version']}" + (" fast" if p["upscale_fast"] else "")


def _upscale_only(p: dict[str, Any]) -> str:
    fields = {
        "Postprocess upscale by": p["upscale"],
        "Postprocess upscaler": _upscaler(p),
        "Upscale steps": p["upscale_steps"],
        "Seed": p["seed"],
        "Size": f"{p['width']}x{p['height']}",
        "Model hash": p["upscaler_sha256"][:10],
        "Version": f"atelier {p['software_version']}",
    }
    return ", ".join(f"{k}: {_quoted(v)}" for k, v in fields.items())


def _quoted(value: Any) -> str:
    """A value as A1111 writes it: JSON-quoted when it holds a separator (a comma, colon or newline)."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def metadata(chunk: Chunk) -> None:
    rows = [provenance_of(chunk, row) for row in range(len(chunk.indices))]
    chunk.metadata = [{"parameters": parameters(p), "provenance": json.dumps(p, sort_keys=True)} for p in rows]
