"""The x4 super-resolution sampler: an EDM chain on the residual over the upsampled input.

Images are premultiplied RGBA float32 in [-1, 1], NCHW. With ``up = upsample(lr_aug)`` (the
bicubic matrices of :mod:`diffusion.resample`) and ``lr_aug = lr + aug_level * n_aug``
(noise-conditioning augmentation of the input, Ho et al. 2021 "Cascaded Diffusion Models" §4.2;
the level is a network input, fixed at inference), the network denoises the residual
``r = HR - up`` (ResShift, Yue et al. 2023, starts the chain at the upsampled input rather than
at pure noise). Sampling (docs/MODEL_REPOSITORY.md, upscaler):

* ``r_T = sigma_max * n``; Karras et al. 2022 sigmas (eq. 5) from ``sigma_max`` to ``sigma_min``, then 0;
* deterministic Euler steps on the probability-flow ODE ``dr/dsigma = (r - D(r, sigma)) / sigma``
  (EDM eq. 3), D the network's x0 of the residual; one step is one call at ``sigma_max``;
* ``HR = clip(up + r_0, -1, 1)``, then colour clamped to alpha (premultiplied: rgb <= alpha).

The deterministic baseline (:func:`upscale_fast`) is ``HR = clip(up + fast(up))`` on the
un-augmented input.

**Seeds.** Image seed ``s`` draws its SR noise from :func:`diffusion.noise.normal_rows` on
streams of its own: :data:`AUG_STREAM` (``1 << 20``, ``n_aug`` at the padded LR size) and
:data:`START_STREAM` (``(1 << 20) + 1``, ``n`` at the padded HR size). The base sampler uses
streams 0 (initial latent) and ``k + 1`` (step ``k``), so a cascade's two stages never share
noise while both come from the one image seed; and an image upscales the same alone or in a batch.

**Any size.** The input is padded (edge pixels repeated, right and bottom) until the HR side is a
multiple of the network's ``size_multiple``, and the result cropped back; bicubic taps past the
edge are clamped to it, so the padding leaves ``up`` unchanged inside the image.

**Tiles.** An input with a side over ``tile`` (LR pixels) runs as overlapping tiles. ``up`` and
``r_t`` live over the whole image; every step each tile's x0 is computed from its cut of
``(r_t, up)`` and the tiles' x0 are blended by raised-cosine weights that sum to 1, before the
one Euler step over the whole image. Blending the x0 (not the final images) at every step is what
keeps tiles from drifting apart (MultiDiffusion, Bar-Tal et al. 2023, §3.2): the seam regions
see one consensus estimate. All tiles have one shape, so every image's tiles go in one network
call per step. :func:`upscale_fast` tiles the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diffusion.noise import normal_rows
from diffusion.resample import upsample
from diffusion.schedules import karras_sigmas

__all__ = [
    "AUG_STREAM",
    "START_STREAM",
    "FastFn",
    "SRDenoiser",
    "StepCallback",
    "Tiling",
    "UpscaleParams",
    "alpha_clamp",
    "axis_tiles",
    "axis_weights",
    "plan_tiles",
    "upscale",
    "upscale_fast",
]

AUG_STREAM = 1 << 20          # n_aug: noise-conditioning augmentation of the LR input
START_STREAM = (1 << 20) + 1  # r_T / sigma_max: the residual chain's starting noise

# denoise(x, sigma, low_res, aug) -> x0 of the residual; x, low_res [N, 4, H, W], sigma, aug [N].
SRDenoiser = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# fast(low_res) -> residual [N, 4, H, W].
FastFn = Callable[[np.ndarray], np.ndarray]
# callback(step, total, preview): `step` the 0-based index of the step just taken, `preview`
# the HR estimate clip(up + x0) [B, 4, H, W]. It may raise to stop sampling (cancellation).
StepCallback = Callable[[int, int, np.ndarray], None]


@dataclass(frozen=True)
class UpscaleParams:
    """What sampling needs from a version's manifest (`upscaler` section)."""

    factor: int = 4
    sigma_min: float = 0.002
    sigma_max: float = 1.0
    rho: float = 7.0
    aug_level: float = 0.0
    size_multiple: int = 4        # HR sides the network takes are multiples of this
    tile: int = 64                # LR tile side; larger inputs run in tiles
    tile_overlap: int = 8         # LR pixels shared by neighbouring tiles

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.aug_level < 0:
            raise ValueError(f"aug_level must be >= 0, got {self.aug_level}")
        if self.size_multiple < 1:
            raise ValueError(f"size_multiple must be >= 1, got {self.size_multiple}")
        if self.tile < 1 or not 0 <= 2 * self.tile_overlap < self.tile:
            raise ValueError(f"need tile >= 1 and 0 <= 2 * tile_overlap < tile, got {self.tile}, {self.tile_overlap}")
        if (self.tile * self.factor) % self.size_multiple:
            raise ValueError(f"tile {self.tile} x factor {self.factor} is not a multiple of "
                             f"size_multiple {self.size_multiple}")

    @classmethod
    def from_spec(cls, spec: Any) -> UpscaleParams:
        """From any object with these attribute names (the manifest's `upscaler`, a runtime's info)."""
        return cls(**{name: getattr(spec, name) for name in cls.__dataclass_fields__})

    @property
    def lr_multiple(self) -> int:
        """LR sides are padded to multiples of this, so HR sides are multiples of size_multiple."""
        return self.size_multiple // math.gcd(self.size_multiple, self.factor)


# --- tiles -------------------------------------------------------------------------------------


def axis_tiles(n: int, tile: int, overlap: int, align: int) -> list[int]:
    """Starts of the tiles covering [0, n) along one axis: each `tile` long (one tile of `n` when
    n <= tile), starts multiples of `align` (so every tile cuts the network's stride grid where
    the whole image does) and evenly spread, neighbours overlapping by at least `overlap`.
    `n` and `tile` are multiples of `align`."""
    if n <= tile:
        return [0]
    last = n - tile
    stride = max(align, (tile - overlap) // align * align)   # the widest step keeping the overlap
    count = math.ceil(last / stride) + 1
    # Rounding evenly spaced starts (spacing <= stride) to multiples of align keeps every gap <= stride.
    return sorted({int(round(k * last / (count - 1) / align)) * align for k in range(count)})


def axis_weights(n: int, starts: Sequence[int], size: int, overlap: int) -> np.ndarray:
    """Raised-cosine blend weights [len(starts), size] of one axis, summing to 1 at every
    position of [0, n).

    Where a neighbour precedes a tile, the tile's weight is 0 over the first quarter of the
    overlap (the pixels whose network saw the tile's zero padding), rises as sin^2 over the
    middle half and is 1 after; mirrored where a neighbour follows. Sides at the image border
    keep weight 1, since nothing else covers them. Where two tiles overlap by exactly `overlap`
    the two ramps sum to 1 by themselves (sin^2 + cos^2); where they overlap more (evenly spread
    starts) the division by the sum keeps a smooth partition of unity."""
    raw = np.ones((len(starts), size), dtype=np.float64)
    if overlap > 0:
        margin = overlap // 4
        length = overlap - 2 * margin
        ramp = np.clip((np.arange(overlap) - margin + 0.5) / length, 0.0, 1.0)
        ramp = np.sin(0.5 * np.pi * ramp) ** 2
        for k, start in enumerate(starts):
            if start > 0:
                raw[k, :overlap] *= ramp
            if start + size < n:
                raw[k, size - overlap:] *= ramp[::-1]
    total = np.zeros(n, dtype=np.float64)
    for k, start in enumerate(starts):
        total[start:start + size] += raw[k]
    if np.any(total <= 0):
        raise ValueError("tiles do not cover the axis")
    return np.stack([raw[k] / total[start:start + size] for k, start in enumerate(starts)])


@dataclass(frozen=True)
class Tiling:
    """Where the tiles of an [H, W] image sit, and each tile's [th, tw] blend weight."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    rows: tuple[int, ...]          # tile starts along H
    cols: tuple[int, ...]          # tile starts along W
    weights: np.ndarray            # [n_tiles, 1, th, tw] float32, tile order row-major

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    def boxes(self) -> list[tuple[int, int]]:
        return [(r, c) for r in self.rows for c in self.cols]

    def cut(self, x: np.ndarray) -> np.ndarray:
        """[B, C, H, W] -> [B * n_tiles, C, th, tw], image-major (image b's tiles together)."""
        if self.count == 1:
            return x
        th, tw = self.tile_h, self.tile_w
        parts = [x[:, None, :, r:r + th, c:c + tw] for r, c in self.boxes()]
        tiles = np.concatenate(parts, axis=1)
        return tiles.reshape(-1, *tiles.shape[2:])

    def blend(self, tiles: np.ndarray, batch: int) -> np.ndarray:
        """Inverse of :meth:`cut` for per-pixel estimates: the weighted sum of overlapping tiles."""
        if self.count == 1:
            return tiles
        th, tw = self.tile_h, self.tile_w
        tiles = tiles.reshape(batch, self.count, *tiles.shape[1:])
        out = np.zeros((batch, tiles.shape[2], self.height, self.width), dtype=tiles.dtype)
        for k, (r, c) in enumerate(self.boxes()):
            out[:, :, r:r + th, c:c + tw] += tiles[:, k] * self.weights[k]
        return out


def plan_tiles(height: int, width: int, params: UpscaleParams) -> Tiling:
    """Tiles of an HR image of [height, width] (sides multiples of size_multiple)."""
    f = params.factor
    size, overlap, align = params.tile * f, params.tile_overlap * f, params.size_multiple
    rows, cols = axis_tiles(height, size, overlap, align), axis_tiles(width, size, overlap, align)
    th, tw = min(size, height), min(size, width)
    wr, wc = axis_weights(height, rows, th, overlap), axis_weights(width, cols, tw, overlap)
    weights = np.stack([np.outer(wr[i], wc[j]) for i in range(len(rows)) for j in range(len(cols))])
    return Tiling(height, width, th, tw, tuple(rows), tuple(cols), weights[:, None].astype(np.float32))


# --- sampling ----------------------------------------------------------------------------------


def alpha_clamp(x: np.ndarray) -> np.ndarray:
    """clip to [-1, 1], then premultiplied colour no brighter than its alpha (rgb <= a; the map
    [-1, 1] -> [0, 1] is the same affine one for both, so the clamp holds in either range)."""
    x = np.clip(x, -1.0, 1.0)
    if x.shape[1] == 4:
        x = np.concatenate([np.minimum(x[:, :3], x[:, 3:4]), x[:, 3:4]], axis=1)
    return x


def _pad_lr(lr: np.ndarray, multiple: int) -> np.ndarray:
    h, w = lr.shape[2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return lr
    return np.pad(lr, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")


def _check_lr(lr: np.ndarray) -> np.ndarray:
    lr = np.asarray(lr)
    if lr.ndim != 4 or lr.shape[1] != 4:
        raise ValueError(f"low-resolution input must be premultiplied RGBA [B, 4, h, w], got shape {lr.shape}")
    if lr.shape[0] == 0 or lr.shape[2] == 0 or lr.shape[3] == 0:
        raise ValueError(f"low-resolution input is empty: shape {lr.shape}")
    if not np.isfinite(lr).all():
        raise ValueError("low-resolution input holds NaN or infinity")
    return lr.astype(np.float32, copy=False)


def _upsample(lr: np.ndarray, factor: int) -> np.ndarray:
    return np.asarray(upsample(lr, factor), dtype=np.float32)


def upscale(
    lr: np.ndarray,
    denoise: SRDenoiser,
    params: UpscaleParams,
    *,
    steps: int,
    seeds: Sequence[int],
    callback: StepCallback | None = None,
) -> np.ndarray:
    """``lr`` [B, 4, h, w] -> HR [B, 4, factor*h, factor*w] by ``steps`` Euler steps (any >= 1;
    1, 2, 4 and 8 are the measured ones). Row i depends only on ``lr[i]`` and ``seeds[i]``."""
    lr = _check_lr(lr)
    if len(seeds) != lr.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {lr.shape[0]} images")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    steps = int(steps)
    batch, (h, w), f = lr.shape[0], lr.shape[2:], params.factor
    padded = _pad_lr(lr, params.lr_multiple)
    if params.aug_level > 0:
        padded = padded + np.float32(params.aug_level) * normal_rows(seeds, AUG_STREAM, padded.shape[1:]).astype(
            np.float32)
    up = _upsample(padded, f)
    tiling = plan_tiles(up.shape[2], up.shape[3], params)
    up_tiles = tiling.cut(up)
    rows = up_tiles.shape[0]
    aug = np.full(rows, params.aug_level, dtype=np.float32)
    sigmas = karras_sigmas(steps, params.sigma_min, params.sigma_max, params.rho)
    r = (normal_rows(seeds, START_STREAM, up.shape[1:]) * sigmas[0]).astype(np.float32)
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        out = denoise(tiling.cut(r), np.full(rows, sigma, dtype=np.float32), up_tiles, aug)
        x0 = tiling.blend(np.asarray(out, dtype=np.float32), batch)
        # Euler on dr/dsigma = (r - x0) / sigma (EDM eq. 3), written as a blend toward x0.
        r = x0 + np.float32(sigma_next / sigma) * (r - x0) if sigma_next > 0 else x0
        if callback is not None:
            callback(i, steps, alpha_clamp(up + x0)[:, :, :h * f, :w * f])
    return alpha_clamp(up + r)[:, :, :h * f, :w * f]


def upscale_fast(lr: np.ndarray, fast: FastFn, params: UpscaleParams) -> np.ndarray:
    """The deterministic baseline: HR = clip(up + fast(up)), ``up`` from the un-augmented input,
    tiled like :func:`upscale`."""
    lr = _check_lr(lr)
    batch, (h, w), f = lr.shape[0], lr.shape[2:], params.factor
    up = _upsample(_pad_lr(lr, params.lr_multiple), f)
    tiling = plan_tiles(up.shape[2], up.shape[3], params)
    residual = tiling.blend(np.asarray(fast(tiling.cut(up)), dtype=np.float32), batch)
    return alpha_clamp(up + residual)[:, :, :h * f, :w * f]
