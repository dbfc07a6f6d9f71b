"""Full-reference image quality for super-resolution, in numpy: PSNR, SSIM, alpha error.

Images are uint8 premultiplied RGBA [N, H, W, 4], as the datasets store them and as a served
image is delivered. Colour figures (PSNR, SSIM) are taken on the image **composited over white**
(premultiplied: rgb + (1 - alpha) * white): what a person sees on a page, where colour under
transparent pixels counts for nothing, as it should. Transparency is judged on its own by the
alpha channel's mean absolute error. The round trip compares premultiplied RGBA directly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["alpha_mae", "gaussian_window", "over_white", "psnr", "rgba_psnr", "ssim"]


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 4:
        raise ValueError(f"expected premultiplied RGBA [N, H, W, 4], got shape {images.shape}")
    return images


def over_white(images: np.ndarray) -> np.ndarray:
    """uint8 premultiplied RGBA [N, H, W, 4] -> float64 RGB in [0, 1] over a white background."""
    x = _check(images).astype(np.float64) / 255.0
    return np.clip(x[..., :3] + (1.0 - x[..., 3:4]), 0.0, 1.0)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, peak 1: 10 log10(1 / MSE); identical images get 100 dB instead of infinity."""
    mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


def psnr(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSNR (dB) per image of the composites over white."""
    return _psnr(over_white(images), over_white(reference))


def rgba_psnr(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSNR (dB) per image over premultiplied RGBA in [0, 1] (the round trip's figure)."""
    a, b = (_check(x).astype(np.float64) / 255.0 for x in (images, reference))
    return _psnr(a, b)


def alpha_mae(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean |alpha - alpha_ref| per image, alpha in [0, 1]."""
    a, b = _check(images)[..., 3].astype(np.float64), _check(reference)[..., 3].astype(np.float64)
    return np.abs(a - b).reshape(a.shape[0], -1).mean(axis=1) / 255.0


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The normalised 1-D Gaussian of SSIM's window (Wang et al. 2004, §III-C: 11 x 11, sigma 1.5)."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable correlation of [N, H, W, C] with w x w over H and W, 'valid' region only (as the
    reference implementation of Wang et al.)."""
    k = w.size
    rows = np.lib.stride_tricks.sliding_window_view(x, k, axis=1) @ w
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=2) @ w


def ssim(images: np.ndarray, reference: np.ndarray, *, k1: float = 0.01, k2: float = 0.03,
         window: np.ndarray | None = None) -> np.ndarray:
    """Mean SSIM per image of the composites over white (Wang, Bovik, Sheikh & Simoncelli 2004,
    eq. 13, with their Gaussian window and constants, dynamic range L = 1), averaged over the
    RGB channels and every window position."""
    w = gaussian_window() if window is None else window
    x, y = over_white(images), over_white(reference)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    if min(x.shape[1:3]) < w.size:
        raise ValueError(f"images {x.shape[1]}x{x.shape[2]} are smaller than the {w.size}-pixel window")
    c1, c2 = k1**2, k2**2
    mx, my = _filter_valid(x, w), _filter_valid(y, w)
    sxx = _filter_valid(x * x, w) - mx * mx
    syy = _filter_valid(y * y, w) - my * my
    sxy = _filter_valid(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.reshape(s.shape[0], -1).mean(axis=1)
