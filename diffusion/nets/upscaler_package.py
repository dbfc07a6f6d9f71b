"""An upscaler package on disk: what `atelier export` and `atelier eval upscale` read.

Layout (docs/MODEL_REPOSITORY.md, "Upscalers"): `config.json` with `"kind": "upscaler"`,
`upscaler` (the diffusion network's diffusion.nets.upscaler.UpscalerConfig; extra keys a
training run records are ignored), optional `upscaler_fast` (the CNN's), optional `inference`
(sampling facts: see INFERENCE_DEFAULTS), and `description`, `data_card`, `licenses`,
`provenance`; weights `upscaler_ema.safetensors` (or `upscaler.safetensors`) and optionally
`upscaler_fast_ema.safetensors` (or `upscaler_fast.safetensors`). Safetensors only.
:func:`write_package` assembles one from the trainer's run folders.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from diffusion.nets.upscaler import DiffusionUpscaler, FastUpscaler, UpscalerConfig

KIND = "upscaler"
DIFFUSION_FILES = ("upscaler_ema.safetensors", "upscaler.safetensors")
FAST_FILES = ("upscaler_fast_ema.safetensors", "upscaler_fast.safetensors")
# What a package may say about sampling, and what it gets when it says nothing.
INFERENCE_DEFAULTS: dict[str, Any] = {
    "aug_level": 0.0,          # noise-conditioning augmentation at inference (CDM, Ho et al. 2021)
    "default_steps": 4,
    "max_input_side": 512,     # LR pixels
    "tile": 64,                # LR tile side
    "tile_overlap": 16,        # LR pixels shared by neighbouring tiles
    "image_size": 128,         # HR side the networks were trained at
}


class PackageError(ValueError):
    """An upscaler package is incomplete or contradicts itself; the message names the file."""


@dataclass
class UpscalerPackage:
    path: Path
    diffusion: DiffusionUpscaler                 # eval mode, weights loaded
    diffusion_weights: Path
    fast: FastUpscaler | None = None
    fast_weights: Path | None = None
    inference: dict[str, Any] = field(default_factory=dict)   # every INFERENCE_DEFAULTS key
    raw: dict[str, Any] = field(default_factory=dict)         # config.json as read

    @property
    def config(self) -> UpscalerConfig:
        return self.diffusion.config

    @property
    def size_multiple(self) -> int:
        """HR sides both networks take: tiles and padded inputs must suit each."""
        nets = [self.diffusion] + ([self.fast] if self.fast is not None else [])
        return max(n.config.size_multiple for n in nets)

    def sampling(self) -> dict[str, Any]:
        """The manifest's `upscaler` section as plain values (repository.manifest.UpscalerSpec's fields)."""
        c = self.config
        return {"factor": c.factor, "sigma_min": c.sigma_min, "sigma_max": c.sigma_max, "sigma_data": c.sigma_data,
                "rho": c.rho, "size_multiple": self.size_multiple,
                **{k: v for k, v in self.inference.items() if k != "image_size"}}


def is_upscaler_package(path: Path) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("kind") == KIND


def _weights(path: Path, names: tuple[str, ...]) -> Path | None:
    return next((path / n for n in names if (path / n).is_file()), None)


def _config(raw: dict[str, Any], key: str, arch: str, path: Path) -> UpscalerConfig:
    if not isinstance(raw.get(key), dict):
        raise PackageError(f"{path / 'config.json'}: `{key}` must be the {arch} network's UpscalerConfig")
    cfg = UpscalerConfig.from_dict(raw[key])
    if cfg.arch != arch:
        raise PackageError(f"{path / 'config.json'}: `{key}` is a {cfg.arch!r} network, expected {arch!r}")
    return cfg


def load_package(path: Path) -> UpscalerPackage:
    """The package's networks (eval mode) and sampling facts; a missing or contradictory part is named."""
    path = Path(path)
    if not is_upscaler_package(path):
        raise PackageError(f"{path}: not an upscaler package (config.json with \"kind\": \"upscaler\")")
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    cfg = _config(raw, "upscaler", "diffusion", path)
    weights = _weights(path, DIFFUSION_FILES)
    if weights is None:
        raise PackageError(f"{path}: no {' or '.join(DIFFUSION_FILES)}")
    diffusion = DiffusionUpscaler(cfg)
    diffusion.load_state_dict(load_file(str(weights)), strict=True)
    package = UpscalerPackage(path, diffusion.eval(), weights, raw=raw)
    fast_weights = _weights(path, FAST_FILES)
    if fast_weights is not None:
        fast_cfg = _config(raw, "upscaler_fast", "cnn", path)
        if (fast_cfg.factor, fast_cfg.channels) != (cfg.factor, cfg.channels):
            raise PackageError(f"{path}: the fast network's factor or channels differ from the diffusion network's")
        fast = FastUpscaler(fast_cfg)
        fast.load_state_dict(load_file(str(fast_weights)), strict=True)
        package.fast, package.fast_weights = fast.eval(), fast_weights
    inference = raw.get("inference", {})
    unknown = sorted(set(inference) - set(INFERENCE_DEFAULTS))
    if unknown:
        raise PackageError(f"{path / 'config.json'}: unknown inference key(s) {unknown}; "
                           f"known: {sorted(INFERENCE_DEFAULTS)}")
    package.inference = {**INFERENCE_DEFAULTS, **inference}
    return package


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
        source = _weights(Path(run), DIFFUSION_FILES)
        if source is None:
            raise PackageError(f"{run}: no {DIFFUSION_FILES[0]}")
        shutil.copyfile(source, out / target)
    config["inference"] = dict(inference or {})
    config.update(extra)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out
