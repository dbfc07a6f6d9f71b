"""Resampling for super-resolution, one definition for numpy (serving) and torch (training).

Upsampling is bicubic convolution (Keys 1981, a = -0.75, the coefficient torch and OpenCV use)
with half-pixel centres (align_corners=False) and clamped edges, written as a matrix A [f*n, n]
per axis: up(x) = A_h @ x @ A_w^T channel by channel (docs/ARCHITECTURE.md, "Super-resolution").
Training takes the same float32 matrices through ``torch.from_numpy``, so the ``up`` a network
was trained on is the ``up`` it is served.

Downsampling is the base model's data pipeline (diffusion.data.images.to_premultiplied): a box
filter in premultiplied space, which for an integer factor is the mean of each f x f block.
"""

from __future__ import annotations

import functools

import numpy as np

KEYS_A = -0.75


def _keys(d: np.ndarray, a: float = KEYS_A) -> np.ndarray:
    """Keys' cubic convolution kernel W(d) (Keys 1981, eq. 15)."""
    d = np.abs(d)
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    return np.where(d <= 1.0, near, np.where(d < 2.0, far, 0.0))


@functools.lru_cache(maxsize=64)
def _matrix(n: int, factor: int) -> np.ndarray:
    m = factor * n
    out = np.zeros((m, n), dtype=np.float64)
    x = (np.arange(m) + 0.5) / factor - 0.5          # source coordinate of each output centre
    x0 = np.floor(x).astype(np.int64)
    t = x - x0
    for k in (-1, 0, 1, 2):
        w = _keys(t - k)
        idx = np.clip(x0 + k, 0, n - 1)             # clamped edges: repeat the border pixel
        np.add.at(out, (np.arange(m), idx), w)
    out = out.astype(np.float32)
    out.setflags(write=False)
    return out


def upsample_matrix(n: int, factor: int) -> np.ndarray:
    """Bicubic upsampling matrix [factor*n, n] (float32, read-only; rows sum to 1)."""
    if n < 1 or factor < 1:
        raise ValueError(f"upsample_matrix: need n >= 1 and factor >= 1, got n={n}, factor={factor}")
    return _matrix(int(n), int(factor))


def upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """[..., h, w] -> [..., factor*h, factor*w] float32, A_h @ x @ A_w^T over the last two axes."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise ValueError(f"upsample: need an array [..., h, w], got shape {x.shape}")
    a_h = upsample_matrix(x.shape[-2], factor)
    a_w = upsample_matrix(x.shape[-1], factor)
    return np.matmul(np.matmul(a_h, x), a_w.T)


def downsample(x: np.ndarray, factor: int) -> np.ndarray:
    """[..., H, W] premultiplied -> [..., H/f, W/f]: the mean of each f x f block (PIL's BOX
    filter at an integer ratio, as the base model's 32² data were made)."""
    x = np.asarray(x, dtype=np.float32)
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"downsample: size {h}x{w} is not a multiple of the factor {factor}")
    blocks = x.reshape(*x.shape[:-2], h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(-3, -1), dtype=np.float32)


def upsample_torch(x, factor: int):
    """The torch twin of :func:`upsample` (same matrices), differentiable, on x's device."""
    import torch

    a_h = _torch_matrix(x.shape[-2], factor, x.device, x.dtype)
    a_w = _torch_matrix(x.shape[-1], factor, x.device, x.dtype)
    return torch.matmul(torch.matmul(a_h, x), a_w.T)


@functools.lru_cache(maxsize=64)
def _torch_matrix(n: int, factor: int, device, dtype):
    """upsample_matrix as a tensor, made once per device and dtype (a GPU step copies nothing)."""
    import torch

    return torch.tensor(upsample_matrix(n, factor), device=device, dtype=dtype)


def downsample_torch(x, factor: int):
    """The torch twin of :func:`downsample`: average pooling over f x f blocks."""
    import torch.nn.functional as F

    return F.avg_pool2d(x, factor)
