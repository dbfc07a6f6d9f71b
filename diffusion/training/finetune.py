"""Fine-tune the shipped model on a studio's folder dataset: its images become a new style.

The VAE and the latent normalisation stay frozen (the UNet's input distribution must not
move); the UNet continues from its EMA weights, with one new row in the style embedding per new
style, initialised to the mean of the existing styles so training starts from 'an average style'."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from diffusion.data.dataset import load_dataset
from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
from diffusion.training.common import TrainConfig
from diffusion.training.unet_trainer import train_unet


def extend_styles(state: dict[str, torch.Tensor], n_styles: int) -> dict[str, torch.Tensor]:
    emb = state["style_embed.weight"]
    if emb.shape[0] >= n_styles:
        return state
    extra = emb[1:].mean(dim=0, keepdim=True).repeat(n_styles - emb.shape[0], 1)
    return {**state, "style_embed.weight": torch.cat([emb, extra])}


def finetune(model_dir: Path, dataset: Path, run_dir: Path, cfg: TrainConfig, progress=None,
             resume: bool = True, stop_at: int | None = None) -> dict:
    model_dir = Path(model_dir)
    mc = ModelConfig.from_dict(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))
    ds = load_dataset(dataset)
    styles = list(mc.styles) + [s for s in ds.styles if s not in mc.styles]
    unet_cfg = UNetConfig.from_dict(mc.unet)
    unet_cfg.num_styles = max(unet_cfg.num_styles, len(styles))
    state = extend_styles(load_file(str(model_dir / "unet_ema.safetensors")), unet_cfg.num_styles)
    return train_unet(dataset, model_dir, run_dir, unet_cfg, cfg, edm_cfg=EDMConfig.from_dict(mc.edm),
                      text_cfg=TextConfig.from_dict(mc.text), progress=progress, resume=resume, stop_at=stop_at,
                      init=state, vae_cfg=VAEConfig.from_dict(mc.vae), latent_cfg=LatentConfig.from_dict(mc.latent),
                      styles=styles)
