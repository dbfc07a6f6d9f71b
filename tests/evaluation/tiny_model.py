"""A tiny random latent model saved the way `atelier train vae|unet` saves runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
from diffusion.nets.edm import EDMDenoiser
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE
from diffusion.training.checkpoint import save_checkpoint, save_weights

CONTEXT_DIM = 16
TINY_VAE = VAEConfig(channels=(8, 16, 16), num_res_blocks=1, groups=4)
TINY_UNET = UNetConfig(channels=(16, 32), num_res_blocks=1, attention=(False, True), heads=2,
                       context_dim=CONTEXT_DIM, embed_dim=32, groups=8)


def fake_text(captions: list[str], length: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stand-in for the MiniLM encoder: token states seeded by the caption."""
    states = np.stack([np.random.default_rng(int.from_bytes(hashlib.sha256(c.encode()).digest()[:8], "little"))
                       .standard_normal((length, CONTEXT_DIM)) for c in captions]).astype(np.float32)
    mask = np.ones((len(captions), length), dtype=np.float32)
    return states, mask


def write_tiny_runs(root: Path, styles: list[str], image_size: int, step: int = 7, context_dim: int = CONTEXT_DIM,
                    max_length: int = 6) -> Path:
    """VAE run + UNet checkpoint of random weights under ``root``; returns the UNet run folder.
    ``context_dim=384, max_length=24`` fits the real MiniLM text encoder."""
    torch.manual_seed(0)
    vae_run, unet_run = root / "vae", root / "unet"
    vae_run.mkdir(parents=True)
    TINY_VAE.save(vae_run / "vae_config.json")
    save_weights(vae_run / "vae_ema.safetensors", VAE(TINY_VAE).state_dict())
    unet_cfg = UNetConfig.from_dict({**TINY_UNET.to_dict(), "num_styles": len(styles), "context_dim": context_dim})
    denoiser = EDMDenoiser(UNet(unet_cfg), EDMConfig())
    with torch.no_grad():  # the UNet's output conv starts at zero; make the network do something
        denoiser.net.conv_out.weight.normal_(0.0, 0.05)
    latent = LatentConfig(image_size=image_size, latent_size=image_size // TINY_VAE.downsample,
                          latent_channels=TINY_VAE.latent_channels, scale=1.0, shift=0.0)
    model_cfg = ModelConfig(vae=TINY_VAE.to_dict(), unet=unet_cfg.to_dict(), edm=EDMConfig().to_dict(),
                            text=TextConfig(max_length=max_length, dim=context_dim).to_dict(), latent=latent.to_dict(),
                            styles=tuple(styles))
    meta = {"kind": "unet", "model": model_cfg.to_dict(), "train": {"steps": 4 * step}, "vae_run": str(vae_run),
            "step": step, "param_groups": []}
    state = denoiser.state_dict()
    ema = {k: v.clone() for k, v in state.items()}
    save_checkpoint(unet_run / "checkpoints" / "latest.safetensors", {"model": state, "ema": ema}, meta)
    (unet_run / "model_config.json").write_text(json.dumps(model_cfg.to_dict()) + "\n")
    return unet_run


def write_tiny_shipped(unet_run: Path, out: Path) -> Path:
    """The EMA weights of a tiny run in the shipped folder layout (config.json + *_ema.safetensors)."""
    from diffusion.training.checkpoint import load_checkpoint

    groups, meta = load_checkpoint(unet_run / "checkpoints" / "latest.safetensors")
    out.mkdir(parents=True)
    net = {k.removeprefix("net."): v for k, v in groups["ema"].items()}
    save_weights(out / "unet_ema.safetensors", net)
    (out / "vae_ema.safetensors").write_bytes((Path(meta["vae_run"]) / "vae_ema.safetensors").read_bytes())
    provenance = {"unet_stats": {"steps": meta["step"]}, "unet_train": meta["train"]}
    (out / "config.json").write_text(json.dumps({**meta["model"], "provenance": provenance}) + "\n")
    return out
