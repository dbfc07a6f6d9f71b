"""Encode a dataset once with the trained VAE, and fix the latent scale and shift.

Rombach et al. 2022 (§4.3.2, appendix G) rescale latents by 1/std so the diffusion model
sees unit-variance data; we keep the shift too, so z = (E(x) - shift) * scale has mean 0,
std 1 over the training set, and sigma_data = 1 in the EDM preconditioning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from diffusion.nets.config import LatentConfig, VAEConfig
from diffusion.nets.vae import VAE
from diffusion.training.tensors import to_model


def load_vae(run_dir: Path, cfg: VAEConfig | None = None) -> VAE:
    """The EMA VAE of a training run (``vae_config.json`` + ``vae_ema.safetensors``) or of a
    shipped model folder (``config.json``'s ``vae``); ``cfg`` overrides either."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    if cfg is None:
        run_cfg, shipped_cfg = run_dir / "vae_config.json", run_dir / "config.json"
        if run_cfg.exists():
            cfg = VAEConfig.load(run_cfg)
        elif shipped_cfg.exists():
            cfg = VAEConfig.from_dict(json.loads(shipped_cfg.read_text(encoding="utf-8"))["vae"])
        else:
            raise FileNotFoundError(f"{run_dir}: neither a VAE run (vae_config.json) nor a model folder (config.json)")
    vae = VAE(cfg)
    vae.load_state_dict(load_file(str(Path(run_dir) / "vae_ema.safetensors")))
    return vae.eval()


@torch.no_grad()
def encode_images(vae: VAE, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """uint8 premultiplied RGBA [N,H,W,4] -> posterior mean and log-variance, float32 [N,C,h,w]."""
    means, logvars = [], []
    for i in range(0, len(images), batch_size):
        m, lv = vae.encode(to_model(images[i:i + batch_size]))
        means.append(m.numpy())
        logvars.append(lv.numpy())
    return np.concatenate(means), np.concatenate(logvars)


def latent_stats(mean: np.ndarray, logvar: np.ndarray, image_size: int) -> LatentConfig:
    """Scale from the std of posterior samples: Var[z] = Var[mean] + E[exp(logvar)]."""
    shift = float(mean.mean())
    var = float(mean.var() + np.exp(logvar).mean())
    return LatentConfig(image_size=image_size, latent_size=int(mean.shape[-1]), latent_channels=int(mean.shape[1]),
                        scale=float(1.0 / np.sqrt(var)), shift=shift)


def encode_dataset(vae: VAE, images: np.ndarray, out: Path,
                   fixed: LatentConfig | None = None) -> tuple[np.ndarray, np.ndarray, LatentConfig]:
    """Cache ``out`` (.npz: mean, logvar) and ``out``.json (LatentConfig); reuse if present.
    ``fixed`` keeps an existing model's scale and shift (fine-tuning must not move them)."""
    out = Path(out)
    cfg_path = out.with_suffix(".json")
    if not (out.exists() and cfg_path.exists()):
        mean, logvar = encode_images(vae, images)
        (fixed or latent_stats(mean, logvar, images.shape[1])).save(cfg_path)
        np.savez(out, mean=mean, logvar=logvar)
    # Always train from the file, so a fresh and a resumed run read the very same arrays.
    with np.load(out, allow_pickle=False) as z:
        return z["mean"], z["logvar"], LatentConfig.load(cfg_path)
