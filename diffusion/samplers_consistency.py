"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1; the LCM
sampler of Luo et al. 2023).

A consistency model maps any point of a probability-flow ODE trajectory straight to its origin,
so its ``denoise`` output is the sample itself, not a direction to integrate.  One step is one
evaluation at ``sigmas[0]``; each further step re-noises that estimate to the next sigma with
fresh noise and evaluates again, trading evaluations for quality.  On a network trained with
the ordinary denoising objective it still runs (each step jumps to the denoiser's x0 and
re-noises), but only a distilled consistency model draws sharp images this way.  See
:mod:`diffusion.sampling` for the call convention.
"""

from __future__ import annotations

import numpy as np

from diffusion.noise import NoiseFn
from diffusion.sampling import Callback, Denoiser, check_sigmas, emit, lazy_noise, sigma_vector

__all__ = ["sample_lcm"]


def sample_lcm(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> np.ndarray:
    """x <- D(x, sigma_i); then, unless the schedule ends, x <- x + sigma_{i+1} z_i with z_i = noise(i).

    The re-noised point ``x0 + sigma z`` is exactly a draw of the forward process at the next
    sigma given the estimate (the VE perturbation ``x = x0 + sigma eps``), which is what Song et
    al.'s Algorithm 1 feeds back to the model (their ``sqrt(tau^2 - eps^2)`` with eps = 0: the
    boundary sigma_min is already part of the model's own parametrisation)."""
    sigmas = check_sigmas(sigmas)
    steps = sigmas.size - 1
    draw = lazy_noise(noise, x) if steps > 1 else None
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma_vector(x, sigma))
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        x = denoised
        if sigma_next > 0:
            assert draw is not None
            x = denoised + np.asarray(sigma_next, dtype=x.dtype) * draw(i)
    return x
