"""A trained PyTorch checkpoint as a :class:`~diffusion.evaluation.generate.LatentModel`.

The torch networks sit behind numpy in, numpy out methods, so evaluation samples through the
same numpy samplers, noise and guidance adapters that serving uses (DESIGN §3), and only the
network calls differ from a served job (torch here, ONNX Runtime there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig
from diffusion.nets.edm import EDMDenoiser
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE
from diffusion.training.checkpoint import load_checkpoint
from diffusion.training.latents import load_vae
from diffusion.training.tensors import to_images, to_model

TextFn = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]


@dataclass
class TorchLatentModel:
    """EDM-preconditioned UNet + VAE decoder + text encoder, numpy at the edges.

    ``text`` maps captions to (token states [B,L,D], mask [B,L]); the unconditional branch of
    classifier-free guidance is ``uncond_caption`` with style ``uncond_style`` (what the model saw
    when training dropped its conditioning)."""
    denoiser: EDMDenoiser
    vae: VAE
    text: TextFn
    latent: LatentConfig
    edm: EDMConfig
    styles: tuple[str, ...] = ("none",)
    uncond_caption: str = ""
    uncond_style: int = 0
    _uncond: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.denoiser.eval()
        self.vae.eval()

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent.latent_channels, self.latent.latent_size, self.latent.latent_size)

    @property
    def sigma_min(self) -> float:
        return float(self.edm.sigma_min)

    @property
    def sigma_max(self) -> float:
        return float(self.edm.sigma_max)

    def condition(self, captions: Sequence[str], style_ids: np.ndarray) -> dict[str, np.ndarray]:
        context, mask = self.text(list(captions))
        return {"context": context, "mask": mask, "style": np.asarray(style_ids, dtype=np.int64)}

    def unconditional(self, n: int) -> dict[str, np.ndarray]:
        if self._uncond is None:
            self._uncond = self.text([self.uncond_caption])
        context, mask = self._uncond
        return {"context": np.repeat(context, n, axis=0), "mask": np.repeat(mask, n, axis=0),
                "style": np.full(n, self.uncond_style, dtype=np.int64)}

    @torch.no_grad()
    def denoise(self, x: np.ndarray, sigma: np.ndarray, cond: dict[str, np.ndarray]) -> np.ndarray:
        out = self.denoiser(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                            torch.from_numpy(np.asarray(sigma, dtype=np.float32)),
                            torch.from_numpy(cond["context"]).float(), torch.from_numpy(cond["mask"]).float(),
                            torch.from_numpy(cond["style"]))
        return out.numpy().astype(x.dtype, copy=False)

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Real images through the VAE (posterior mean, then decode): the best any latent of this
        autoencoder can look, so the gap between it and the real floor is the VAE's share."""
        out = [to_images(self.vae.decode(self.vae.encode(to_model(images[i:i + batch_size]))[0]))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else images[:0].copy()

    @torch.no_grad()
    def decode(self, latents: np.ndarray) -> np.ndarray:
        # Inverse of the latent normalisation z = (mean(E(x)) - shift) * scale.
        z = torch.from_numpy(np.asarray(latents, dtype=np.float32)) / self.latent.scale + self.latent.shift
        return to_images(self.vae.decode(z))


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
    model = TorchLatentModel(m.denoiser, m.vae, text or _text_encoder(m.text), m.latent,
                             EDMConfig.from_dict(m.config.edm), tuple(m.config.styles))
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
