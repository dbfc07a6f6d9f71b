"""An Atelier concept-classifier package (`atelier train concepts`; docs/MODEL_REPOSITORY.md,
"Concept classifiers") as one export component, `concept_classifier`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffusion.nets.concept_net import ConceptNetConfig, load_concept_net
from export.component import Component
from export.source import ConceptSource
from repository.manifest import ConceptSpec, ImageSpec

KIND = "concept_classifier"


def is_concept_package(path: Path) -> bool:
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("kind") == KIND
    except (OSError, ValueError):
        return False


def load_concept_package(path: Path, tiling: bool = False) -> ConceptSource:
    if tiling:
        raise ValueError("--tiling is for base models: a concept classifier has no padding mode to choose")
    raw = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    cfg = ConceptNetConfig.from_dict(raw["network"])
    net = load_concept_net(Path(path), cfg)
    missing = [c for c in cfg.concepts if c not in raw["thresholds"]]
    if missing:
        raise ValueError(f"{Path(path) / 'config.json'}: no threshold for {missing}")
    spec = ConceptSpec(concepts=cfg.concepts, thresholds=tuple(float(raw["thresholds"][c]) for c in cfg.concepts),
                       image_size=cfg.image_size)
    problems = spec.problems()
    if problems:
        raise ValueError(f"{Path(path) / 'config.json'}: " + "; ".join(problems))
    side = cfg.image_size

    def example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch, cfg.in_channels, side, side, generator=g) * 2 - 1,)

    component = Component(role=KIND, module=net, input_names=("image",), output_name="logits", example=example,
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    return ConceptSource(
        kind=KIND, path=Path(path), components=[component],
        image=ImageSpec(width=side, height=side, channels=cfg.in_channels, premultiplied_alpha=True),
        concepts=spec, data_card=raw.get("data_card", {}), licenses=tuple(raw.get("licenses", ())),
        provenance={**raw.get("provenance", {}), "network": cfg.to_dict()},
        description=raw.get("description", "Atelier output concept classifier"),
    )
