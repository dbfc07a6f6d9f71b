"""A training checkpoint or a shipped model folder loaded as a
:class:`~diffusion.training.latent_model.TorchLatentModel` for evaluation."""

from __future__ import annotations

from pathlib import Path

from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig
from diffusion.nets.edm import EDMDenoiser
from diffusion.nets.unet import UNet
from diffusion.training.checkpoint import load_checkpoint
from diffusion.training.latent_model import TextFn, TorchLatentModel
from diffusion.training.latents import load_vae


def checkpoint_file(path: str | Path) -> Path:
    """A UNet run folder, its ``checkpoints/`` folder, or a checkpoint ``.safetensors`` -> the file."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "latest.safetensors", path / "latest.safetensors"):
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"no checkpoints/latest.safetensors under {path}")
    return path


def _text_encoder(cfg: TextConfig) -> TextFn:
    from diffusion.nets.text import TextEncoder

    return TextEncoder(cfg.max_length)


def is_shipped(path: str | Path) -> bool:
    """A packaged model folder (``atelier train package``): config.json + EMA weights."""
    path = Path(path)
    return (path / "config.json").exists() and (path / "unet_ema.safetensors").exists()


def load_shipped_model(folder: str | Path, *, text: TextFn | None = None) -> tuple[TorchLatentModel, dict]:
    """The shipped model folder (e.g. ``models/atelier-emoji/1``) as a model, with a meta dict in
    the shape of a checkpoint's (step, planned steps, checkpoint path)."""
    from diffusion.nets.shipped import load_shipped

    m = load_shipped(folder)
    provenance = m.raw.get("provenance", {})
    fast = m.consistency or {}
    model = TorchLatentModel(m.denoiser, m.vae, text or _text_encoder(m.text), m.latent,
                             EDMConfig.from_dict(m.config.edm), tuple(m.config.styles),
                             guidance_input=bool(fast),
                             ramp_sigma_min=float(fast["sample_sigma_min"]) if "sample_sigma_min" in fast else None)
    meta = {"kind": "shipped", "checkpoint": str(folder), "step": provenance.get("unet_stats", {}).get("steps"),
            "train": {"steps": provenance.get("unet_train", {}).get("steps")},
            "defaults": m.raw.get("defaults", {})}
    return model, meta


def load_latent_model(checkpoint: str | Path, *, vae_run: str | Path | None = None, weights: str = "ema",
                      text: TextFn | None = None) -> tuple[TorchLatentModel, dict]:
    """A training checkpoint of ``atelier train unet`` (safetensors + JSON meta), or a shipped
    model folder, as a model.

    ``weights``: "ema" (what ships) or "model" (the raw weights). The VAE comes from the run the
    checkpoint names (``vae_run`` overrides). ``text`` defaults to the MiniLM encoder of the
    model's text config. Returns the model and the checkpoint's meta."""
    if is_shipped(checkpoint):
        return load_shipped_model(checkpoint, text=text)
    path = checkpoint_file(checkpoint)
    groups, meta = load_checkpoint(path)
    if meta.get("kind") != "unet":
        raise ValueError(f"{path} is not a UNet checkpoint (kind {meta.get('kind')!r})")
    if weights not in groups:
        raise ValueError(f"{path} has no {weights!r} weights; it has {sorted(groups)}")
    cfg = ModelConfig.from_dict(meta["model"])
    edm = EDMConfig.from_dict(cfg.edm)
    denoiser = EDMDenoiser(UNet(UNetConfig.from_dict(cfg.unet)), edm)
    denoiser.load_state_dict({k: v.float() for k, v in groups[weights].items()})
    vae = load_vae(Path(vae_run or meta["vae_run"]))
    model = TorchLatentModel(denoiser, vae, text or _text_encoder(TextConfig.from_dict(cfg.text)),
                             LatentConfig.from_dict(cfg.latent), edm, tuple(cfg.styles))
    return model, {**{k: v for k, v in meta.items() if k != "param_groups"}, "checkpoint": str(path)}
