"""Adapters from network outputs to the one denoiser contract ``denoise(x, sigma, cond) -> x0``.

``x`` is ``[B, C, H, W]`` in VE form (``x = x0 + sigma * eps``), ``sigma`` a ``[B]`` vector:
every row its own noise level, so jobs at different steps share one network call.  A network is
any callable ``net(x_in, c_noise, cond) -> F`` over numpy arrays (an ONNX session, a torch
module behind a numpy shim, a toy); the adapters wrap it in the preconditioning of Karras et al.
2022 (EDM), §5 and Table 1:

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))

For a discrete-time VP network (DDPM/LDM), c_in = 1/sqrt(sigma² + 1) maps VE back to VP
coordinates and c_noise is the fractional training timestep of sigma; c_skip/c_out depend on
what the network predicts:

    =========  ===================  ============================
    predicts   c_skip               c_out
    =========  ===================  ============================
    eps        1                    -sigma                        (EDM Table 1, VP column)
    v          1 / (sigma² + 1)     -sigma / sqrt(sigma² + 1)     (Salimans & Ho 2022, §4 / App. D)
    x0         0                    1
    =========  ===================  ============================

Samplers want a two-argument ``denoise(x, sigma)``: :func:`bind` fixes ``cond``.  Clipping of
the x0 estimate (static, or Imagen's dynamic thresholding) is another wrapper, :class:`Clipped`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffusion.preconditioning import edm_noise_label, edm_scalings
from diffusion.schedules import sigma_to_t, vp_sigmas

__all__ = [
    "PREDICTION_TYPES",
    "Clipped",
    "EDMDenoiser",
    "VPDenoiser",
    "bind",
    "dynamic_threshold",
    "static_threshold",
]

Network = Callable[[np.ndarray, np.ndarray, Any], np.ndarray]
Denoiser3 = Callable[[np.ndarray, np.ndarray, Any], np.ndarray]

# Accepted spellings (ours, diffusers' config names) -> canonical name.
PREDICTION_TYPES = {
    "eps": "eps",
    "epsilon": "eps",
    "v": "v",
    "v_prediction": "v",
    "x0": "x0",
    "sample": "x0",
}


def _col(v: np.ndarray, ndim: int) -> np.ndarray:
    """A ``[B]`` vector shaped to broadcast against a ``[B, ...]`` array of ``ndim`` dims."""
    return np.asarray(v, dtype=np.float64).reshape(-1, *([1] * (ndim - 1)))


def _sigma_vec(x: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    return np.broadcast_to(np.asarray(sigma, dtype=np.float64), (np.shape(x)[0],))


@dataclass(frozen=True)
class VPDenoiser:
    """A discrete-time network trained on ``alphas_cumprod`` (T entries), as a VE denoiser.

    ``prediction``: "eps" (default), "v" or "x0" (diffusers' "epsilon", "v_prediction", "sample"
    too).  The network gets ``x / sqrt(sigma² + 1)`` (in ``x``'s dtype) and the fractional
    timestep ``sigma_to_t(sigma)`` as float64 ``[B]``; ``quantize=True`` rounds it to the nearest
    trained step, for networks that only know integer timesteps.
    """

    net: Network
    alphas_cumprod: np.ndarray
    prediction: str = "eps"
    quantize: bool = False

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction type {self.prediction!r}; expected one of {sorted(PREDICTION_TYPES)}")
        object.__setattr__(self, "prediction", PREDICTION_TYPES[self.prediction])
        object.__setattr__(self, "alphas_cumprod", np.asarray(self.alphas_cumprod, dtype=np.float64))
        object.__setattr__(self, "train_sigmas", vp_sigmas(self.alphas_cumprod))

    @property
    def sigma_min(self) -> float:
        return float(self.train_sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.train_sigmas[-1])

    def timestep(self, sigma: np.ndarray) -> np.ndarray:
        t = sigma_to_t(sigma, self.train_sigmas)
        return np.round(t) if self.quantize else t

    def __call__(self, x: np.ndarray, sigma: np.ndarray, cond: Any = None) -> np.ndarray:
        sigma = _sigma_vec(x, sigma)
        s = _col(sigma, x.ndim)
        c_in = 1.0 / np.sqrt(s * s + 1.0)
        out = np.asarray(self.net((c_in * x).astype(x.dtype, copy=False), self.timestep(sigma), cond))
        if self.prediction == "eps":
            d = x - s * out
        elif self.prediction == "v":
            d = x / (s * s + 1.0) - s * c_in * out
        else:
            d = out
        return d.astype(x.dtype, copy=False)


@dataclass(frozen=True)
class EDMDenoiser:
    """A continuous-time network with EDM's preconditioning (Karras et al. 2022, Table 1; the
    scalings are :mod:`diffusion.preconditioning`'s).  ``sigma_data`` defaults to 0.5.
    """

    net: Network
    sigma_data: float = 0.5

    def __call__(self, x: np.ndarray, sigma: np.ndarray, cond: Any = None) -> np.ndarray:
        sigma = _sigma_vec(x, sigma)
        c_skip, c_out, c_in = edm_scalings(_col(sigma, x.ndim), self.sigma_data)
        with np.errstate(divide="ignore"):
            c_noise = edm_noise_label(sigma)
        out = np.asarray(self.net((c_in * x).astype(x.dtype, copy=False), c_noise, cond))
        return (c_skip * x + c_out * out).astype(x.dtype, copy=False)


def bind(denoise: Denoiser3, cond: Any = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The two-argument ``denoise(x, sigma)`` samplers call, with ``cond`` fixed."""

    def bound(x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        return denoise(x, sigma, cond)

    return bound


# ---------------------------------------------------------------------------------------------
# Clipping the x0 estimate
# ---------------------------------------------------------------------------------------------


def static_threshold(x0: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """Clip to [-limit, limit] (Saharia et al. 2022, "Imagen", §2.3 static thresholding)."""
    return np.clip(x0, -limit, limit)


def dynamic_threshold(x0: np.ndarray, percentile: float = 0.995, limit: float = 1.0) -> np.ndarray:
    """Imagen's dynamic thresholding (Saharia et al. 2022, §2.3), per sample.

    s = max(quantile_p(|x0|), limit); x0 <- clip(x0, -s, s) * limit / s.  With ``limit=1`` this is
    Imagen's rule for pixels in [-1, 1]; for latents pass their range (e.g. 3-4 for unit-variance
    latents) so only outliers are squeezed.
    """
    flat = np.abs(np.asarray(x0, dtype=np.float64)).reshape(x0.shape[0], -1)
    s = np.maximum(np.quantile(flat, percentile, axis=1), limit)
    s = _col(s, x0.ndim)
    return (np.clip(x0, -s, s) * (limit / s)).astype(x0.dtype, copy=False)


@dataclass(frozen=True)
class Clipped:
    """Wrap a denoiser so its x0 estimate is thresholded: ``method`` "static" or "dynamic".

    Multistep solvers extrapolate from earlier x0 estimates; without clipping they can diverge on
    schedules whose first sigmas are huge (cosine), which this prevents.
    """

    denoise: Denoiser3
    method: str = "dynamic"
    limit: float = 1.0
    percentile: float = 0.995

    def __post_init__(self) -> None:
        if self.method not in ("static", "dynamic"):
            raise ValueError("method must be 'static' or 'dynamic'")

    def __call__(self, x: np.ndarray, sigma: np.ndarray, cond: Any = None) -> np.ndarray:
        x0 = self.denoise(x, sigma, cond)
        if self.method == "static":
            return static_threshold(x0, self.limit)
        return dynamic_threshold(x0, self.percentile, self.limit)
