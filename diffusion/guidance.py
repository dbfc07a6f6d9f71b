"""Classifier-free guidance as a denoiser adapter (Ho & Salimans 2022).

    D_w(x, sigma) = D(x, sigma, uncond) + w * (D(x, sigma, cond) - D(x, sigma, uncond))

Guiding the x0 estimate is the same as guiding eps or v: at fixed (x, sigma) each is an affine
function of the others.  The negative prompt's embedding is the unconditional branch.  The
conditional and unconditional rows go through the network in ONE call (``2B`` rows).  Optional
guidance rescale (Lin et al. 2023, "Common diffusion noise schedules and sample steps are
flawed", §3.4) pulls the per-sample std of the guided x0 back toward the conditional one to
prevent over-exposure at large ``w``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffusion.defaults import DEFAULT_GUIDANCE

__all__ = ["ClassifierFreeGuidance", "EmbeddedGuidance", "embedded_guidance", "guided", "split_cond", "stack_cond"]


def stack_cond(a: Any, b: Any) -> Any:
    """Rows of ``a`` then rows of ``b``: arrays concatenate on axis 0, dicts/tuples per entry."""
    if a is None and b is None:
        return None
    if isinstance(a, dict):
        return {k: stack_cond(a[k], b[k]) for k in a}
    if isinstance(a, tuple | list):
        return type(a)(stack_cond(u, v) for u, v in zip(a, b, strict=True))
    return np.concatenate([np.asarray(a), np.asarray(b)], axis=0)


def split_cond(c: Any, n: int) -> tuple[Any, Any]:
    """Inverse of :func:`stack_cond` for the first ``n`` rows."""
    if c is None:
        return None, None
    if isinstance(c, dict):
        parts = {k: split_cond(v, n) for k, v in c.items()}
        return {k: p[0] for k, p in parts.items()}, {k: p[1] for k, p in parts.items()}
    if isinstance(c, tuple | list):
        parts = [split_cond(v, n) for v in c]
        return type(c)(p[0] for p in parts), type(c)(p[1] for p in parts)
    return c[:n], c[n:]


def _row_std(a: np.ndarray) -> np.ndarray:
    return np.std(a.reshape(a.shape[0], -1), axis=1).reshape(-1, *([1] * (a.ndim - 1)))


@dataclass(frozen=True)
class ClassifierFreeGuidance:
    """Guided two-argument denoiser ``(x, sigma) -> x0`` for samplers.

    ``denoise(x, sigma, cond)`` is the three-argument denoiser (e.g. a :class:`VPDenoiser`);
    ``cond``/``uncond`` are conditionings with B rows each (arrays, or dicts/tuples of arrays);
    ``scale`` (w, default ``DEFAULT_GUIDANCE``) is a float or a ``[B]`` array; 1 turns guidance off and skips the
    unconditional half.  ``rescale`` (phi in [0, 1], default 0: off) applies Lin et al. eqs. 15-16:
    x_rescaled = x_cfg * std(x_cond) / std(x_cfg), result = phi x_rescaled + (1 - phi) x_cfg.
    """

    denoise: Callable[[np.ndarray, np.ndarray, Any], np.ndarray]
    cond: Any
    uncond: Any
    scale: float | np.ndarray = DEFAULT_GUIDANCE
    rescale: float = 0.0

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        b = x.shape[0]
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (b,))
        w = np.asarray(self.scale, dtype=np.float64)
        if w.ndim == 0 and float(w) == 1.0:
            return self.denoise(x, sigma, self.cond)
        both = self.denoise(
            np.concatenate([x, x], axis=0), np.concatenate([sigma, sigma]), stack_cond(self.uncond, self.cond)
        )
        x0_uncond, x0_cond = both[:b], both[b:]
        w = np.broadcast_to(w, (b,)).reshape(-1, *([1] * (x.ndim - 1)))
        x0 = x0_uncond + w * (x0_cond - x0_uncond)
        if self.rescale > 0:
            rescaled = x0 * (_row_std(x0_cond) / np.maximum(_row_std(x0), 1e-12))
            x0 = self.rescale * rescaled + (1.0 - self.rescale) * x0
        return x0.astype(x.dtype, copy=False)


def guided(denoise, cond, uncond, scale: float | np.ndarray = DEFAULT_GUIDANCE,
           rescale: float = 0.0) -> ClassifierFreeGuidance:
    """Shorthand for :class:`ClassifierFreeGuidance`."""
    return ClassifierFreeGuidance(denoise, cond, uncond, scale, rescale)


GUIDANCE_INPUT = "guidance"  # the conditioning key (and ONNX input) of a guidance-embedded network


@dataclass(frozen=True)
class EmbeddedGuidance:
    """Guided two-argument denoiser for a network that takes the guidance scale as an input
    (guidance distillation, Meng et al. 2023; the LCM student of docs/MODEL.md "Fast mode"): one
    call of B rows with ``cond["guidance"] = w``, no unconditional branch. ``scale`` is a float or
    a ``[B]`` array."""

    denoise: Callable[[np.ndarray, np.ndarray, Any], np.ndarray]
    cond: dict
    scale: float | np.ndarray = DEFAULT_GUIDANCE

    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        w = np.broadcast_to(np.asarray(self.scale, dtype=np.float32), (x.shape[0],))
        return self.denoise(x, sigma, {**self.cond, GUIDANCE_INPUT: np.ascontiguousarray(w)})


def embedded_guidance(denoise, cond: dict, scale: float | np.ndarray = DEFAULT_GUIDANCE) -> EmbeddedGuidance:
    """Shorthand for :class:`EmbeddedGuidance`."""
    return EmbeddedGuidance(denoise, dict(cond), scale)
