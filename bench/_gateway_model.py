"""The model bench.gateway runs: the shipped default model, or its architecture with random weights.

Latency through the service does not depend on what the weights learned, only on the
networks' shapes. When `models/atelier-emoji/1/` holds only the packaged checkpoint, the bench
exports it (once, into a cache folder); when it does not exist yet, the bench exports the
architecture that `diffusion/training/run_emoji.sh` trains (the VAE of
`atelier train vae` defaults, the UNet of the run's `unet.args`, the all-MiniLM-L6-v2 text
encoder, the packaged sampling defaults) with random weights, once, into a cache folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = REPO_ROOT / "models"
NAME = "atelier-emoji"
CACHE = Path.home() / ".cache" / "atelier" / "bench" / "gateway-models"
STYLES = ("none", "noto", "twemoji", "fluent-flat")


def shipped_defaults() -> dict:
    """The sampling defaults diffusion/training/package.py writes into the shipped config."""
    from diffusion.samplers import DEFAULT_SAMPLER

    return {"sampler": DEFAULT_SAMPLER, "steps": 20, "guidance_scale": 3.0, "schedule": "karras"}


def shipped_exported() -> bool:
    return (SHIPPED / NAME / "1" / "manifest.json").is_file()


def default_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A checkpoint folder of the default architecture with random (small, non-zero) weights."""
    import torch
    from safetensors.torch import save_file

    from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
    from diffusion.nets.unet import UNet
    from diffusion.nets.vae import VAE

    folder.mkdir(parents=True, exist_ok=True)
    # `atelier train vae` defaults; `unet.args` of /work/runs/atelier-emoji-1 (--channels 64 128
    # --num-res-blocks 2 --embed-dim 256; heads 4 and attention on both levels by default).
    vae_cfg = VAEConfig(channels=(32, 64, 128), latent_channels=4, num_res_blocks=1)
    unet_cfg = UNetConfig(channels=(64, 128), num_res_blocks=2, embed_dim=256, heads=4, attention=(True, True),
                          num_styles=len(STYLES))
    cfg = ModelConfig(vae=vae_cfg.to_dict(), unet=unet_cfg.to_dict(), edm=EDMConfig().to_dict(),
                      text=TextConfig().to_dict(), latent=LatentConfig().to_dict(), styles=STYLES)
    data = {**cfg.to_dict(), "defaults": shipped_defaults(), "data_card": {"note": "random weights, for benchmarks"},
            "licenses": [{"set": "none", "license": "random weights"}]}
    (folder / "config.json").write_text(json.dumps(data))
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    for name, net in (("vae.safetensors", VAE(vae_cfg)), ("unet_ema.safetensors", UNet(unet_cfg))):
        with torch.no_grad():  # zero-initialised output layers would make the parity check degenerate
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        save_file(net.state_dict(), str(folder / name))
    return folder


def export(checkpoint: Path, out: Path, name: str, *, optimize: bool = True, tiling: bool = False) -> None:
    from clients.cli import main as atelier

    argv = ["export", str(checkpoint), "--name", name, "--version", "1", "--out", str(out)]
    argv += ["--optimize"] * optimize + ["--tiling"] * tiling
    if atelier(argv) != 0:
        raise RuntimeError(f"atelier {' '.join(argv)} failed")


def default_repository(log=print) -> tuple[Path, str, str]:
    """(model repository, model name, where it came from): the shipped export if there is one, else
    an export (cached) of the shipped checkpoint, else of the default architecture with random weights."""
    shipped = SHIPPED / NAME / "1"
    if shipped_exported():
        return SHIPPED, NAME, "shipped models/atelier-emoji/1"
    if (shipped / "config.json").is_file():  # packaged by `atelier train package`, not exported yet
        key = hashlib.sha256((shipped / "config.json").read_bytes()).hexdigest()[:12]
        repo = CACHE / f"shipped-{key}"
        if not (repo / NAME / "1" / "manifest.json").is_file():
            log(f"exporting the shipped checkpoint {shipped} to {repo}")
            export(shipped, repo, NAME)
        return repo, NAME, "shipped checkpoint models/atelier-emoji/1, exported by the bench"
    d = shipped_defaults()
    repo = CACHE / f"repo-{d['sampler']}-{d['steps']}"  # a new export when the shipped defaults change
    if not (repo / NAME / "1" / "manifest.json").is_file():
        log(f"models/{NAME}/1 does not exist yet: exporting its architecture with random weights to {repo}")
        default_checkpoint(CACHE / "checkpoint")
        export(CACHE / "checkpoint", repo, NAME)
    return repo, NAME, "default architecture, random weights (models/atelier-emoji/1 not there yet)"
