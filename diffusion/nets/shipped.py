"""Load a shipped model folder (``models/<name>/<version>/``) into torch modules.

Layout (written by ``atelier train package``): ``config.json`` (ModelConfig + defaults, data
card, licences, provenance), ``vae_ema.safetensors``, ``unet_ema.safetensors``. A consistency-distilled
model's ``config.json`` has a ``consistency`` section (``atelier train distill``, docs/MODEL.md "Fast
mode"): its denoiser is the :class:`ConsistencyDenoiser` over the student, which takes the guidance
scale as an input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
from diffusion.nets.consistency import ConsistencyDenoiser
from diffusion.nets.edm import EDMDenoiser
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE

DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "models"


def latest_shipped(name: str = "atelier-emoji", root: str | Path = DEFAULT_MODELS) -> Path:
    """The newest packaged version folder ``root/name/<N>`` (numeric versions, one holding a
    ``config.json``): what fine-tuning and evaluation start from when no model is named."""
    folder = Path(root) / name
    versions = sorted((p for p in folder.iterdir() if p.name.isdigit() and (p / "config.json").is_file()),
                      key=lambda p: int(p.name)) if folder.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"no packaged version of {name!r} in {root}")
    return versions[-1]


@dataclass
class ShippedModel:
    # denoiser(x, sigma[B], context[B,L,384], mask[B,L], style[B]) -> x0; a consistency model's
    # ConsistencyDenoiser takes guidance[B] (the scale w) as a sixth input.
    denoiser: EDMDenoiser | ConsistencyDenoiser
    vae: VAE
    config: ModelConfig
    latent: LatentConfig
    text: TextConfig
    raw: dict                  # the whole config.json (defaults, data card, licences, provenance)

    @property
    def consistency(self) -> dict | None:
        """The ``consistency`` section of a distilled student (boundary sigma_min, guidance range,
        the sampling ramp's end ``sample_sigma_min``), else None."""
        return self.raw.get("consistency")


def load_shipped(folder: str | Path) -> ShippedModel:
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg = ModelConfig.from_dict(raw)
    vae = VAE(VAEConfig.from_dict(cfg.vae))
    vae.load_state_dict(load_file(str(folder / "vae_ema.safetensors")))  # float16 files cast to float32 here
    denoiser = EDMDenoiser(UNet(UNetConfig.from_dict(cfg.unet)), EDMConfig.from_dict(cfg.edm))
    denoiser.net.load_state_dict(load_file(str(folder / "unet_ema.safetensors")))
    if "consistency" in raw:
        denoiser = ConsistencyDenoiser(denoiser, float(raw["consistency"]["sigma_min"]))
    return ShippedModel(denoiser.eval(), vae.eval(), cfg, LatentConfig.from_dict(cfg.latent),
                        TextConfig.from_dict(cfg.text), raw)
