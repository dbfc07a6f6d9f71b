"""Train the RGBA VAE: L1 reconstruction + a weak KL term (Rombach et al. 2022 §3.1 use a
KL weight ~1e-6 so the latent keeps detail; the latents are rescaled to unit std afterwards)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from diffusion.data.dataset import TRAIN, VALIDATION, load_dataset
from diffusion.data.images import grid
from diffusion.nets.config import VAEConfig
from diffusion.nets.vae import VAE, kl_divergence
from diffusion.training.checkpoint import save_weights
from diffusion.training.common import Optimization, TrainConfig, autocast, configure_torch
from diffusion.training.loop import train_loop
from diffusion.training.tensors import to_images, to_model


def build_vae(cfg: VAEConfig, seed: int) -> VAE:
    torch.manual_seed(seed)
    return VAE(cfg)


def train_vae(dataset: Path, run_dir: Path, vae_cfg: VAEConfig, cfg: TrainConfig, kl_weight: float = 1e-5,
              progress=None, resume: bool = True, stop_at: int | None = None) -> dict:
    device = configure_torch(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(dataset)
    images = torch.from_numpy(ds.subset(TRAIN).images).to(device)
    val = ds.subset(VALIDATION).images
    val = val[:: max(1, len(val) // 16)][:16] if len(val) else ds.images[:16]
    model = build_vae(vae_cfg, cfg.seed).to(device)
    opt = Optimization(model, cfg)
    f = vae_cfg.downsample
    h = images.shape[1] // f
    vae_cfg.save(run_dir / "vae_config.json")
    cfg.save(run_dir / "train_config.json")

    def loss_fn(step: int, g: torch.Generator):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=g)
        x = to_model(images[idx.to(device)])
        noise = torch.randn(cfg.batch_size, vae_cfg.latent_channels, h, h, generator=g).to(device)
        with autocast(cfg, device):
            recon, mean, logvar = model(x, noise)
        rec = (recon.float() - x).abs().mean()
        kl = kl_divergence(mean.float(), logvar.float()).mean()
        return rec + kl_weight * kl, {"l1": float(rec.detach()), "kl": float(kl.detach())}

    def sample_fn(step: int) -> None:
        ema = VAE(vae_cfg).to(device)
        opt.ema.copy_to(ema)
        recon = reconstruct(ema, val)
        sheet = grid(np.concatenate([val, recon]), cols=len(val), scale=3)
        (run_dir / "samples").mkdir(exist_ok=True)
        sheet.save(run_dir / "samples" / f"recon_{step:06d}.png")
        sheet.save(run_dir / "samples" / "latest.png")

    meta = {"kind": "vae", "vae": vae_cfg.to_dict(), "train": cfg.to_dict(), "dataset": str(dataset),
            "kl_weight": kl_weight}
    summary = train_loop(opt, cfg, run_dir, loss_fn, meta, sample_fn, progress, resume, stop_at)
    ema = VAE(vae_cfg)
    opt.ema.copy_to(ema)
    save_weights(run_dir / "vae_ema.safetensors", ema.state_dict())
    (run_dir / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "losses"},
                                                     indent=2) + "\n", encoding="utf-8")
    return summary


@torch.no_grad()
def reconstruct(vae: VAE, images: np.ndarray) -> np.ndarray:
    vae.eval()
    dev = next(vae.parameters()).device
    mean, _ = vae.encode(to_model(images).to(dev))
    return to_images(vae.decode(mean).cpu())
