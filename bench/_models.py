"""The networks the engine and batching benchmarks measure.

The default model is whatever the project ships; until its weights exist, the benchmarks
time random weights of the same architecture, which costs exactly the same FLOPs and ops.
Where that architecture comes from, first match wins:

1. `--checkpoint DIR`: an Atelier checkpoint folder (config.json + safetensors), real weights;
2. the `model_config.json` a training run wrote (`<runs>/*/unet/model_config.json`, runs in
   $ATELIER_RUNS, ./runs or /work/runs): the config the shipped model is being trained with;
3. the defaults of `atelier train vae` / `atelier train unet` (what diffusion/training/run_emoji.sh
   runs when no extra arguments are given).

The larger UNet is the same code with every channel count widened (in multiples of the
GroupNorm group count) to the width whose parameter count is nearest ~35 M.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

RUN_ROOTS = ("runs", "/work/runs")


@dataclass(frozen=True)
class ModelChoice:
    config: dict            # diffusion.nets.config.ModelConfig as a dict (+ optional defaults)
    source: str             # where the architecture came from, for the report
    checkpoint: Path | None = None   # real weights, when there are any


def _cli_defaults() -> dict:
    """ModelConfig from the training CLI's own defaults, read from its parser (never copied)."""
    import argparse

    from diffusion.nets.config import LatentConfig, ModelConfig, UNetConfig, VAEConfig
    from diffusion.training.cli import register

    parser = argparse.ArgumentParser()
    register(parser)
    vae = parser.parse_args(["vae", "--data", "-", "--run-dir", "-"])
    unet = parser.parse_args(["unet", "--data", "-", "--run-dir", "-", "--vae-run", "-"])
    vae_cfg = VAEConfig(channels=tuple(vae.channels), latent_channels=vae.latent_channels,
                        num_res_blocks=vae.num_res_blocks)
    levels = len(unet.channels)
    unet_cfg = UNetConfig(channels=tuple(unet.channels), num_res_blocks=unet.num_res_blocks,
                          embed_dim=unet.embed_dim, heads=unet.heads,
                          attention=tuple([False] * (levels - unet.attention_levels) + [True] * unet.attention_levels))
    latent = LatentConfig()
    latent.latent_size = latent.image_size // vae_cfg.downsample
    latent.latent_channels = vae_cfg.latent_channels
    return ModelConfig(vae=vae_cfg.to_dict(), unet=unet_cfg.to_dict(), latent=latent.to_dict()).to_dict()


def default_model(checkpoint: Path | None = None) -> ModelChoice:
    if checkpoint is not None:
        return ModelChoice(json.loads((Path(checkpoint) / "config.json").read_text()), f"checkpoint {checkpoint}",
                           Path(checkpoint))
    roots = [Path(os.environ["ATELIER_RUNS"])] if os.environ.get("ATELIER_RUNS") else []
    for root in [*roots, *map(Path, RUN_ROOTS)]:
        found = sorted(root.glob("*/unet/model_config.json"), key=lambda p: p.stat().st_mtime)
        if found:
            return ModelChoice(json.loads(found[-1].read_text()), f"training run config {found[-1]} (random weights)")
    return ModelChoice(_cli_defaults(), "`atelier train` defaults (random weights)")


def unet_params(unet: dict) -> int:
    from diffusion.nets.config import UNetConfig
    from diffusion.nets.unet import UNet

    return sum(p.numel() for p in UNet(UNetConfig.from_dict(unet)).parameters())


def widened(config: dict, target_params: float = 35e6) -> dict:
    """The same ModelConfig with the UNet's channels scaled to the width nearest `target_params`."""
    unet = dict(config["unet"])
    channels, groups = list(unet["channels"]), int(unet["groups"])
    best: tuple[float, dict] | None = None
    for first in range(channels[0] + groups, 16 * channels[0], groups):
        scale = first / channels[0]
        wide = {**unet, "channels": [max(groups, round(c * scale / groups) * groups) for c in channels]}
        params = unet_params(wide)
        if best is None or abs(params - target_params) < best[0]:
            best = (abs(params - target_params), wide)
        if params > target_params:
            break
    return {**config, "unet": best[1]}


def write_checkpoint(folder: Path, config: dict, seed: int = 0) -> Path:
    """An Atelier checkpoint folder with random weights of `config`. Every parameter gets noise:
    the zero-initialised output layers would otherwise make whole branches exact zeros."""
    import torch
    from safetensors.torch import save_file

    from diffusion.nets.config import UNetConfig, VAEConfig
    from diffusion.nets.unet import UNet
    from diffusion.nets.vae import VAE

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    nets = (("vae", VAE(VAEConfig.from_dict(config["vae"]))), ("unet", UNet(UNetConfig.from_dict(config["unet"]))))
    for name, net in nets:
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        save_file(net.state_dict(), str(folder / f"{name}.safetensors"))
    return folder


def load_denoiser(checkpoint: Path):
    """The torch EDM denoiser (x, sigma, context, mask, style) -> x0 of a checkpoint folder, eval mode."""
    from diffusion.nets.config import EDMConfig, ModelConfig, UNetConfig
    from diffusion.nets.edm import EDMDenoiser
    from diffusion.nets.unet import UNet
    from export.sources.atelier import UNET_FILES, _first, _load

    cfg = ModelConfig.from_dict(json.loads((checkpoint / "config.json").read_text()))
    unet = UNet(UNetConfig.from_dict(cfg.unet))
    _load(unet, _first(checkpoint, UNET_FILES), ("net.", "unet.", "model."))
    return EDMDenoiser(unet, EDMConfig.from_dict(cfg.edm)).eval()


def export_repository(checkpoint: Path, out: Path, name: str, progress=print) -> Path:
    """Export with the project's exporter (default + ORT-optimised files); returns the repository root."""
    from export.pipeline import ExportOptions, export_model

    export_model(checkpoint, ExportOptions(name=name, version="1", out=out, optimize=True),
                 progress=lambda m: progress(f"  export {name}: {m}"))
    return out


def tiny_checkpoint(folder: Path) -> Path:
    """The export tests' tiny random model (tiny BERT text encoder included): for --quick runs."""
    from bench.tiny_models import atelier_checkpoint

    return atelier_checkpoint(folder)
