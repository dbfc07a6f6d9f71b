"""Tiny random models for the export tests: an Atelier checkpoint folder and a diffusers
Stable Diffusion pipeline folder, built from configs (no hub downloads)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE
from export.text_encoders import minilm_dir

TEXT_DIM = 32


def _perturb(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Random weights everywhere: zero-initialised output layers would make parity trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return module


def tiny_bert(folder: Path) -> None:
    import transformers

    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=TEXT_DIM, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64)
    model = _perturb(transformers.BertModel(cfg).eval(), 3, 0.02)
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(minilm_dir() / "tokenizer.json", folder / "tokenizer.json")


def atelier_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vae_cfg = VAEConfig(channels=(16, 32, 32), groups=8)
    unet_cfg = UNetConfig(channels=(16, 32), num_res_blocks=1, attention=(False, True), heads=2, context_dim=TEXT_DIM,
                          num_styles=3, embed_dim=32, groups=8)
    cfg = ModelConfig(vae=vae_cfg.to_dict(), unet=unet_cfg.to_dict(), edm=EDMConfig().to_dict(),
                      text=TextConfig(max_length=8, dim=TEXT_DIM).to_dict(),
                      latent=LatentConfig(image_size=16, latent_size=4, scale=0.8, shift=0.1).to_dict(),
                      styles=("none", "noto", "twemoji"))
    data = cfg.to_dict()
    data["data_card"] = {"sets": ["test"]}
    data["licenses"] = [{"set": "test", "license": "CC0-1.0"}]
    (folder / "config.json").write_text(json.dumps(data))
    torch.manual_seed(0)
    save_file(_perturb(VAE(vae_cfg), 1).state_dict(), str(folder / "vae.safetensors"))
    save_file(_perturb(UNet(unet_cfg), 2).state_dict(), str(folder / "unet_ema.safetensors"))
    tiny_bert(folder / "text_encoder")
    return folder
