"""What an export source yields: the components to export and the manifest facts about them
(a base model's `Source`, an upscaler's `UpscalerSource`, a concept classifier's `ConceptSource`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.component import Component
from repository.manifest import (
    ConceptSpec,
    Defaults,
    ImageSpec,
    LatentSpec,
    ScheduleSpec,
    TextEncoderSpec,
    UNetSpec,
    UpscalerSpec,
)


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


@dataclass
class UpscalerSource:
    kind: str                                   # "upscaler"
    path: Path
    components: list[Component]                 # `upscaler`, and `upscaler_fast` when the package has it
    image: ImageSpec
    upscaler: UpscalerSpec
    data_card: dict[str, Any] = field(default_factory=dict)
    licenses: tuple[dict[str, Any], ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass
class ConceptSource:
    kind: str                                   # "concept_classifier"
    path: Path
    components: list[Component]                 # `concept_classifier`
    image: ImageSpec
    concepts: ConceptSpec
    data_card: dict[str, Any] = field(default_factory=dict)
    licenses: tuple[dict[str, Any], ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    description: str = ""
