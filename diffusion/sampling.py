"""What every sampler shares: the call convention, the callback payload, argument checks.

**Call convention** (docs/ARCHITECTURE.md, Contracts: sampler)::

    sample(denoise, x, sigmas, *, noise=None, callback=None, **options) -> x

* ``denoise(x, sigma) -> x0``: numpy, ``x`` of shape ``[B, C, H, W]`` (any ``[B, ...]`` works),
  ``sigma`` a float64 ``[B]`` vector (every row the same inside one sampler call).  Bind the
  conditioning first, e.g. ``lambda x, s: model(x, s, cond)``.
* ``x``: the starting point, standard normal noise times ``sigmas[0]`` (for image-to-image the
  noised init latent, see :mod:`diffusion.editing`).
* ``sigmas``: float64, strictly decreasing, ending in 0; ``len(sigmas) - 1`` steps.  A single
  ``[0]`` means no steps: ``x`` comes back unchanged.
* ``noise``: ``noise(k) -> ndarray`` shaped like ``x``, standard normal, for step k; see
  :mod:`diffusion.noise`.  Only stochastic samplers (and churn) call it; ``None`` means
  :func:`diffusion.noise.content_noise` of the starting ``x``.
* ``callback(step: SamplerStep)``: called once per step, after the step's first denoiser
  evaluation and before ``x`` is updated.  It may raise to stop sampling (cancellation).

Samplers hold no state between calls: multistep history lives in local variables, so one
function serves any number of concurrent jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diffusion.noise import NoiseFn, content_noise

__all__ = ["Callback", "Denoiser", "SamplerStep", "check_sigmas", "lazy_noise", "sigma_vector"]

Denoiser = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SamplerStep:
    """Callback payload: progress (``i`` of ``steps``) and a preview (``denoised``)."""

    i: int  # 0-based step index
    steps: int  # total number of steps, len(sigmas) - 1
    sigma: float  # noise level of x (after churn, if any)
    sigma_next: float  # noise level this step moves to
    x: np.ndarray  # current sample, before this step's update
    denoised: np.ndarray  # the current x0 estimate, denoise(x, sigma)


Callback = Callable[[SamplerStep], None]


def check_sigmas(sigmas: np.ndarray) -> np.ndarray:
    """Validate a sampling schedule: 1-D, strictly decreasing, positive, last entry 0."""
    s = np.asarray(sigmas, dtype=np.float64)
    if s.ndim != 1 or s.size < 1:
        raise ValueError("sigmas must be a non-empty 1-D array")
    if s[-1] != 0.0:
        raise ValueError("sigmas must end in 0")
    if s.size > 1 and (np.any(np.diff(s) >= 0) or np.any(s[:-1] <= 0)):
        raise ValueError("sigmas must be positive and strictly decreasing before the final 0")
    return s


def sigma_vector(x: np.ndarray, sigma: float) -> np.ndarray:
    """The ``[B]`` float64 sigma argument of the denoiser."""
    return np.full(x.shape[0], sigma, dtype=np.float64)


def lazy_noise(noise: NoiseFn | None, x: np.ndarray) -> NoiseFn:
    """``noise`` or, if None, the content-seeded default of the starting ``x`` (made on first use)."""
    if noise is not None:
        return noise
    cache: list[NoiseFn] = []
    x0 = x  # samplers never write into their input

    def default(k: int) -> np.ndarray:
        if not cache:
            cache.append(content_noise(x0))
        return cache[0](k)

    return default


def emit(callback: Callback | None, i: int, steps: int, sigma: float, sigma_next: float, x, denoised) -> None:
    if callback is not None:
        callback(SamplerStep(i, steps, float(sigma), float(sigma_next), x, denoised))
