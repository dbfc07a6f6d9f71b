"""Image-to-image and inpainting on top of any sampler.

**Image-to-image** (SDEdit, Meng et al. 2022): noise the encoded init latent to the sigma where
the last ``strength`` fraction of the schedule begins, and run only those steps.  Strength 0
runs nothing and returns the init; strength 1 runs everything from ``init + sigma_max * noise``.

**Inpainting** without an inpainting-trained network: a denoiser wrapper, so it works with every
sampler.  Before each evaluation the known region of ``x`` is replaced by the known latent
re-noised to the current sigma with a fixed noise draw (as in RePaint, Lugmayr et al. 2022, eq. 8,
without resampling), and the x0 estimate of the known region is replaced by the known latent.
Every sampler's last step returns its x0 estimate, so the known region ends exactly on the known
latent; :func:`composite` makes that bitwise.  Masks: 1 (white) = repaint, 0 (black) = keep,
soft values blend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diffusion.sampler_catalog import steps_run
from diffusion.sampling import check_sigmas

__all__ = ["Inpaint", "composite", "img2img_start", "latent_mask", "truncate_sigmas"]


def truncate_sigmas(sigmas: np.ndarray, strength: float) -> np.ndarray:
    """The tail of ``sigmas`` holding the last ``floor(steps * strength)`` steps (and the final 0)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    sigmas = check_sigmas(sigmas)
    steps = sigmas.size - 1
    keep = steps_run(steps, strength) if strength > 0 else 0
    return sigmas[steps - keep :].copy()


def img2img_start(
    init_latent: np.ndarray, sigmas: np.ndarray, strength: float, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, sigmas_tail)`` to hand to a sampler: ``x = init + sigmas_tail[0] * noise``.

    ``noise`` is the standard normal initial noise (e.g. :func:`diffusion.noise.initial_noise`).
    """
    tail = truncate_sigmas(sigmas, strength)
    x = np.asarray(init_latent) + tail[0] * np.asarray(noise)
    return x.astype(np.result_type(init_latent, noise), copy=False), tail


def latent_mask(mask: np.ndarray, latent_hw: tuple[int, int], mode: str = "max") -> np.ndarray:
    """A repaint mask ``[B|1, 1, h, w]`` in [0, 1] at latent resolution.

    ``mask`` is ``[H, W]``, ``[B, H, W]`` or ``[B, 1, H, W]`` at image or latent resolution, values
    in [0, 1] (or 0..255 for uint8).  Image resolution must be an integer multiple of the latent
    one; ``mode`` "max" (default) repaints a latent cell if any of its pixels is repainted (no seam
    of stale pixels), "area" averages the cell.
    """
    m = np.asarray(mask)
    m = m.astype(np.float64) / 255.0 if m.dtype == np.uint8 else m.astype(np.float64)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1:
        raise ValueError(f"mask must be [H, W], [B, H, W] or [B, 1, H, W], got shape {np.shape(mask)}")
    h, w = latent_hw
    H, W = m.shape[-2:]
    if H % h or W % w or H // h != W // w:
        raise ValueError(f"mask size {H}x{W} is not an integer multiple of the latent size {h}x{w}")
    f = H // h
    if f > 1:
        cells = m.reshape(m.shape[0], 1, h, f, w, f)
        if mode == "max":
            m = cells.max(axis=(3, 5))
        elif mode == "area":
            m = cells.mean(axis=(3, 5))
        else:
            raise ValueError("mode must be 'max' or 'area'")
    return np.clip(m, 0.0, 1.0)


def composite(x: np.ndarray, known: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask * x + (1 - mask) * known``: repaint where mask is 1, keep ``known`` where it is 0."""
    return (mask * x + (1.0 - mask) * known).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class Inpaint:
    """Two-argument denoiser ``(x, sigma) -> x0`` that keeps the known region.

    ``denoise``: the sampler's denoiser (after guidance); ``known``: the encoded init latent
    ``[B, C, h, w]``; ``mask``: repaint mask at latent resolution (see :func:`latent_mask`);
    ``noise``: the fixed standard normal draw that re-noises ``known`` (pass the same initial noise
    the sampler started from, so the known region of ``x`` is already consistent).
    """

    denoise: Callable[[np.ndarray, np.ndarray], np.ndarray]
    known: np.ndarray
    mask: np.ndarray
    noise: np.ndarray

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        s = np.asarray(sigma, dtype=np.float64).reshape(-1, *([1] * (x.ndim - 1)))
        x_in = composite(x, self.known + s * self.noise, self.mask)
        return composite(self.denoise(x_in, sigma), self.known, self.mask)
