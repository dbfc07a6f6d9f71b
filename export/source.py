"""What an export source yields: the components to export and the manifest facts about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.component import Component
from services.common.manifest import Defaults, ImageSpec, LatentSpec, ScheduleSpec, TextEncoderSpec, UNetSpec


@dataclass
class Source:
    kind: str                                   # "atelier" or "diffusers"
    path: Path
    components: list[Component]                 # default and tiling variants
    tokenizer_json: str
    image: ImageSpec
    latent: LatentSpec
    schedule: ScheduleSpec
    unet: UNetSpec
    text_encoder: TextEncoderSpec
    styles: tuple[str, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    data_card: dict[str, Any] = field(default_factory=dict)
    licenses: tuple[dict[str, Any], ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def detect(path: Path) -> str:
    """`diffusers` for a pipeline folder (model_index.json), `atelier` for a training checkpoint."""
    path = Path(path)
    if (path / "model_index.json").is_file():
        return "diffusers"
    if (path / "config.json").is_file():
        return "atelier"
    raise FileNotFoundError(
        f"{path} is neither a diffusers pipeline folder (model_index.json) nor an Atelier checkpoint (config.json)"
    )


def load_source(path: Path, tiling: bool = False, text_fp16: bool | None = None) -> Source:
    kind = detect(path)
    if kind == "diffusers":
        from export.sources.diffusers_pipeline import load_diffusers

        return load_diffusers(Path(path), tiling=tiling, text_fp16=bool(text_fp16))
    from export.sources.atelier import load_atelier

    return load_atelier(Path(path), tiling=tiling, text_fp16=text_fp16)
