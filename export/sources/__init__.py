"""Export sources: an Atelier training checkpoint, an Atelier upscaler package, or a diffusers pipeline folder.

Each source module turns its folder into an :class:`export.source.Source`; this package picks
the module by what the folder holds, importing it only then (diffusers is heavy and optional).
"""

from __future__ import annotations

from pathlib import Path

from export.source import Source, UpscalerSource


def detect(path: Path) -> str:
    """`diffusers` for a pipeline folder (model_index.json), `upscaler` for an upscaler package
    (config.json with "kind": "upscaler"), `atelier` for a training checkpoint."""
    path = Path(path)
    if (path / "model_index.json").is_file():
        return "diffusers"
    if (path / "config.json").is_file():
        from diffusion.nets.upscaler_package import is_upscaler_package

        return "upscaler" if is_upscaler_package(path) else "atelier"
    raise FileNotFoundError(
        f"{path} is neither a diffusers pipeline folder (model_index.json) nor an Atelier checkpoint (config.json)"
    )


def load_source(path: Path, tiling: bool = False, text_fp16: bool | None = None) -> Source | UpscalerSource:
    kind = detect(path)
    if kind == "upscaler":
        from export.sources.upscaler import load_upscaler_package

        return load_upscaler_package(Path(path), tiling=tiling)
    if kind == "diffusers":
        from export.sources.diffusers_pipeline import load_diffusers

        return load_diffusers(Path(path), tiling=tiling, text_fp16=bool(text_fp16))
    from export.sources.atelier import load_atelier

    return load_atelier(Path(path), tiling=tiling, text_fp16=text_fp16)
