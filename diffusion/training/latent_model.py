"""A torch latent model (EDM-preconditioned UNet, VAE, text encoder) behind numpy in, numpy out
methods: a :class:`~diffusion.text_to_image.LatentModel`.

Training's sample grids and evaluation sample it through the same numpy samplers, seeded noise
and guidance adapters that serving uses (:mod:`diffusion.text_to_image`), so the same seed gives
the same image everywhere and only the network calls differ from a served job (torch here, ONNX
Runtime there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from diffusion.nets.config import EDMConfig, LatentConfig
from diffusion.nets.edm import EDMDenoiser
from diffusion.nets.vae import VAE
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
    # A consistency-distilled student (docs/MODEL.md, "Fast mode") takes the guidance scale as an
    # input (``cond["guidance"]``, one row per image) and ends its sampling ramp above the
    # boundary sigma: ``ramp_sigma_min`` replaces ``edm.sigma_min`` as the schedule's end.
    guidance_input: bool = False
    ramp_sigma_min: float | None = None
    _uncond: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.denoiser.eval()
        self.vae.eval()

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent.latent_channels, self.latent.latent_size, self.latent.latent_size)

    @property
    def sigma_min(self) -> float:
        return float(self.edm.sigma_min if self.ramp_sigma_min is None else self.ramp_sigma_min)

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
                            torch.from_numpy(cond["style"]),
                            *((torch.from_numpy(np.asarray(cond["guidance"], dtype=np.float32)),)
                              if "guidance" in cond else ()))
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
