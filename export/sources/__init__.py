"""Export sources: an Atelier training checkpoint, an Atelier upscaler or concept-classifier package, or a
diffusers pipeline folder.

Each source module turns its folder into an :class:`export.source.Source`; this package picks
the module by what the folder holds, importing it only then (diffusers is heavy and optional).
"""

from __future__ import annotations

from pathlib import Path

from export.source import ConceptSource, Source, UpscalerSource


def detect(path: Path) -> str:
    """`diffusers` for a pipeline folder (model_index.json), `upscaler` for an upscaler package
    (config.json with "kind": "upscaler"), `concept_classifier` for a concept-classifier package
    (config.json with "kind": "concept_classifier"), `atelier` for a training checkpoint."""
    path = Path(path)
    if (path / "model_index.json").is_file():
        return "diffusers"
    if (path / "config.json").is_file():
        from diffusion.nets.upscaler_package import is_upscaler_package
        from export.sources.concepts import KIND, is_concept_package

        if is_concept_package(path):
            return KIND
        return "upscaler" if is_upscaler_package(path) else "atelier"
    raise FileNotFoundError(
        f"{path} is neither a diffusers pipeline folder (model_index.json) nor an Atelier checkpoint (config.json)"
    )


def load_source(path: Path, tiling: bool = False,
                text_fp16: bool | None = None) -> Source | UpscalerSource | ConceptSource:
    kind = detect(path)
    if kind == "concept_classifier":
        from export.sources.concepts import load_concept_package

        return load_concept_package(Path(path), tiling=tiling)
    if kind == "upscaler":
        from export.sources.upscaler import load_upscaler_package

        return load_upscaler_package(Path(path), tiling=tiling)
    if kind == "diffusers":
        from export.sources.diffusers_pipeline import load_diffusers

        return load_diffusers(Path(path), tiling=tiling, text_fp16=bool(text_fp16))
    from export.sources.atelier import load_atelier

    return load_atelier(Path(path), tiling=tiling, text_fp16=text_fp16)
