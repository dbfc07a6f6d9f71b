"""Images from a latent text-to-image model through the project's numpy sampling stack.

Training's sample grids and evaluation both draw through here, and it is exactly the path a
served job takes, minus the service: seeded initial noise
(:mod:`diffusion.noise`), the Karras et al. 2022 (EDM eq. 5) schedule, classifier-free guidance
as a denoiser adapter (:mod:`diffusion.guidance`) and a registered sampler
(:mod:`diffusion.samplers`), then the VAE decoder. Any model that offers the four methods of
:class:`LatentModel` can be evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from diffusion.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS
from diffusion.guidance import embedded_guidance, guided
from diffusion.noise import SeededNoise, initial_noise
from diffusion.samplers import get_sampler
from diffusion.schedules import karras_sigmas


class LatentModel(Protocol):
    styles: tuple[str, ...]              # style names by id; 0 is "none"
    latent_shape: tuple[int, int, int]   # (C, h, w)
    sigma_min: float
    sigma_max: float

    def condition(self, captions: Sequence[str], style_ids: np.ndarray) -> Any:
        """Conditioning rows for ``denoise`` (anything :func:`diffusion.guidance.stack_cond` stacks)."""

    def unconditional(self, n: int) -> Any:
        """The conditioning the model was trained to see when its prompt was dropped."""

    def denoise(self, x: np.ndarray, sigma: np.ndarray, cond: Any) -> np.ndarray:
        """x0 estimate for noisy latents ``x`` [B,C,h,w] at noise levels ``sigma`` [B]."""

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents [B,C,h,w] -> uint8 premultiplied RGBA images [B,H,W,4]."""

    # Optional: guidance_input (True for a consistency-distilled student: the scale is fed as
    # cond["guidance"], one row per image, no unconditional branch).
    # Optional: reconstruct(images) -> images, real images through the autoencoder; when present,
    # the report adds them as a set (the autoencoder's floor).


def generate(model: LatentModel, captions: Sequence[str], style_ids: Sequence[int], seeds: Sequence[int], *,
             steps: int = DEFAULT_STEPS, sampler: str = DEFAULT_SAMPLER, guidance: float = DEFAULT_GUIDANCE,
             batch_size: int = 32, progress: Callable[[Iterable], Iterable] | None = None) -> np.ndarray:
    """One image per (caption, style, seed) row: uint8 premultiplied RGBA [N,H,W,4].

    Rows are sampled in batches of ``batch_size``; every row's noise depends only on its seed
    (:mod:`diffusion.noise`), so the images do not depend on the batching."""
    n = len(captions)
    if not (len(style_ids) == len(seeds) == n):
        raise ValueError("captions, style_ids and seeds must have the same length")
    sample = get_sampler(sampler)
    sigmas = karras_sigmas(steps, model.sigma_min, model.sigma_max)
    out = []
    starts = range(0, n, batch_size)
    for start in progress(starts) if progress else starts:
        rows = slice(start, min(n, start + batch_size))
        batch_seeds = [int(s) for s in seeds[rows]]
        cond = model.condition(list(captions[rows]), np.asarray(style_ids[rows], dtype=np.int64))
        if getattr(model, "guidance_input", False):
            denoise = embedded_guidance(model.denoise, cond, guidance)
        else:
            denoise = guided(model.denoise, cond, model.unconditional(len(batch_seeds)), guidance)
        x = initial_noise(batch_seeds, model.latent_shape, np.float32) * np.float32(sigmas[0])
        noise = SeededNoise(tuple(batch_seeds), model.latent_shape, "float32")
        latents = sample(denoise, x, sigmas, noise=noise)
        out.append(model.decode(latents))
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 4), dtype=np.uint8)
