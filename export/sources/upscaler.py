"""An Atelier upscaler package (docs/MODEL_REPOSITORY.md, "Upscalers") as export components.

Layout read here: `config.json` with `"kind": "upscaler"`, `upscaler` (the diffusion network's
diffusion.nets.upscaler.UpscalerConfig; extra keys a training run records are ignored), optional
`upscaler_fast` (the deterministic CNN's), optional `inference` (aug_level, default_steps,
max_input_side, tile, tile_overlap, image_size), and `description`, `data_card`, `licenses`,
`provenance`; the weights `upscaler_ema.safetensors` (or `upscaler.safetensors`) and optionally
`upscaler_fast_ema.safetensors` (or `upscaler_fast.safetensors`). Safetensors only.
:func:`write_package` assembles one from the trainer's run folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from diffusion.nets.upscaler import DiffusionUpscaler, FastUpscaler, UpscalerConfig
from export.component import Component
from export.source import UpscalerSource
from repository.manifest import ImageSpec, UpscalerSpec

KIND = "upscaler"
DIFFUSION_FILES = ("upscaler_ema.safetensors", "upscaler.safetensors")
FAST_FILES = ("upscaler_fast_ema.safetensors", "upscaler_fast.safetensors")
# Sampling facts a package may state; the rest of the manifest's section comes from the network.
INFERENCE_KEYS = ("aug_level", "default_steps", "max_input_side", "tile", "tile_overlap", "image_size")


def is_upscaler_package(path: Path) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("kind") == KIND


def _weights(path: Path, names: tuple[str, ...], required: bool) -> Path | None:
    found = next((path / n for n in names if (path / n).is_file()), None)
    if found is None and required:
        raise FileNotFoundError(f"{path}: no {' or '.join(names)}")
    return found


def _load(module: nn.Module, path: Path) -> nn.Module:
    module.load_state_dict(load_file(str(path)), strict=True)
    return module.eval()


def _config(raw: dict[str, Any], key: str, arch: str, path: Path) -> UpscalerConfig:
    if not isinstance(raw.get(key), dict):
        raise ValueError(f"{path / 'config.json'}: `{key}` must be the {arch} network's UpscalerConfig")
    cfg = UpscalerConfig.from_dict(raw[key])
    if cfg.arch != arch:
        raise ValueError(f"{path / 'config.json'}: `{key}` is a {cfg.arch!r} network, expected {arch!r}")
    return cfg


def _example_side(cfg: UpscalerConfig) -> int:
    # Four stride cells a side: small enough to check quickly, big enough for every level to see a border.
    return 4 * cfg.size_multiple


def diffusion_component(net: DiffusionUpscaler, cfg: UpscalerConfig) -> Component:
    side = _example_side(cfg)

    def example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        # sigma log-uniform over the sampler's range; the sample at the scale the chain has there.
        lo, hi = torch.log(torch.tensor(cfg.sigma_min)), torch.log(torch.tensor(cfg.sigma_max))
        sigma = torch.exp(lo + (hi - lo) * torch.rand(batch, generator=g))
        scale = torch.sqrt(sigma**2 + cfg.sigma_data**2)[:, None, None, None]
        sample = torch.randn(batch, cfg.channels, side, side, generator=g) * scale
        low_res = torch.rand(batch, cfg.channels, side, side, generator=g) * 2 - 1
        aug = torch.rand(batch, generator=g) * cfg.max_aug_level
        return sample, sigma, low_res, aug

    spatial = {0: "batch", 2: "height", 3: "width"}
    return Component(role="upscaler", module=net, input_names=("sample", "sigma", "low_res", "aug_level"),
                     output_name="out", example=example,
                     dynamic_axes={"sample": dict(spatial), "sigma": {0: "batch"}, "low_res": dict(spatial),
                                   "aug_level": {0: "batch"}},
                     dynamic_size=True)


def fast_component(net: FastUpscaler, cfg: UpscalerConfig) -> Component:
    side = _example_side(cfg)

    def example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch, cfg.channels, side, side, generator=g) * 2 - 1,)

    return Component(role="upscaler_fast", module=net, input_names=("low_res",), output_name="out", example=example,
                     dynamic_axes={"low_res": {0: "batch", 2: "height", 3: "width"}}, dynamic_size=True)


def load_upscaler_package(path: Path, tiling: bool = False) -> UpscalerSource:
    if tiling:
        raise ValueError("--tiling is for base models: an upscaler tiles large inputs itself "
                         "(docs/MODEL_REPOSITORY.md)")
    path = Path(path)
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    cfg = _config(raw, "upscaler", "diffusion", path)
    weights = _weights(path, DIFFUSION_FILES, required=True)
    components = [diffusion_component(_load(DiffusionUpscaler(cfg), weights), cfg)]
    provenance = {**raw.get("provenance", {}), "upscaler_weights": weights.name, "upscaler_config": cfg.to_dict()}
    fast_weights = _weights(path, FAST_FILES, required=False)
    if fast_weights is not None:
        fast_cfg = _config(raw, "upscaler_fast", "cnn", path)
        if (fast_cfg.factor, fast_cfg.channels) != (cfg.factor, cfg.channels):
            raise ValueError(f"{path}: the fast network's factor/channels differ from the diffusion network's")
        components.append(fast_component(_load(FastUpscaler(fast_cfg), fast_weights), fast_cfg))
        provenance.update(upscaler_fast_weights=fast_weights.name, upscaler_fast_config=fast_cfg.to_dict())
    inference = raw.get("inference", {})
    unknown = sorted(set(inference) - set(INFERENCE_KEYS))
    if unknown:
        raise ValueError(f"{path / 'config.json'}: unknown inference key(s) {unknown}; known: {INFERENCE_KEYS}")
    # The size multiple of either network: tiles and padded inputs must suit both.
    multiple = max(c.module.config.size_multiple for c in components)
    spec = UpscalerSpec(
        factor=cfg.factor, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, sigma_data=cfg.sigma_data, rho=cfg.rho,
        size_multiple=multiple, **{k: v for k, v in inference.items() if k != "image_size"},
    )
    problems = spec.problems()
    if problems:
        raise ValueError(f"{path / 'config.json'}: " + "; ".join(problems))
    size = int(inference.get("image_size", 128))
    return UpscalerSource(
        kind=KIND, path=path, components=components,
        image=ImageSpec(width=size, height=size, channels=cfg.channels, premultiplied_alpha=cfg.channels == 4),
        upscaler=spec, data_card=raw.get("data_card", {}), licenses=tuple(raw.get("licenses", ())),
        provenance=provenance, description=raw.get("description", f"Atelier x{cfg.factor} diffusion upscaler"),
    )


def write_package(out: Path, diffusion_run: Path, cnn_run: Path | None = None,
                  inference: dict[str, Any] | None = None, **extra: Any) -> Path:
    """An upscaler package in `out` from the trainer's run folders (each: config.json and
    upscaler_ema.safetensors); `extra` adds description, data_card, licenses, provenance."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"kind": KIND}
    runs = (("upscaler", diffusion_run, DIFFUSION_FILES[0]), ("upscaler_fast", cnn_run, FAST_FILES[0]))
    for key, run, target in runs:
        if run is None:
            continue
        config[key] = json.loads((Path(run) / "config.json").read_text(encoding="utf-8"))
        shutil.copyfile(_weights(Path(run), DIFFUSION_FILES, required=True), out / target)
    config["inference"] = dict(inference or {})
    config.update(extra)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out
