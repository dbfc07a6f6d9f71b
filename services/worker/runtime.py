"""What the image pipeline needs from a loaded model: the `ModelRuntime` protocol.

The ONNX Runtime implementation (model repository, provider selection, warm-up) plugs in
behind this protocol; the pipeline, the batching denoiser and the tests only see it. A
runtime is loaded by the function that `Settings.runtime_loader` names
(`"module:function"`, called as `load(settings, model, version) -> ModelRuntime`).

Latents are float32 `[B, C, h, w]` already scaled for the denoiser; images are uint8
`[B, H, W, 4]` straight-alpha RGBA.

An upscaler version (a manifest with an `upscaler` section) loads as an `UpscalerRuntime`
instead: the same loader returns it (docs/MODEL_REPOSITORY.md, "Upscalers").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from diffusion.upscale import SRDenoiser, UpscaleParams
from services.common.plan import ModelFacts, UpscalerFacts

Cond = Mapping[str, np.ndarray]
DenoiseFn = Callable[[np.ndarray, np.ndarray, Cond | None], np.ndarray]
# The upscaler's extra network inputs, as `cond` keys of its contract-shaped denoiser.
LOW_RES, AUG_LEVEL = "low_res", "aug_level"


@dataclass(frozen=True, kw_only=True)
class ModelInfo(ModelFacts):
    """A loaded model version: the facts jobs are planned against, and what running them needs."""

    latent_channels: int
    latent_factor: int
    styles: tuple[str, ...] = ()
    supports_tiling: bool = False  # True: the runtime has circular-padding networks (`tiling=True`)
    supports_init_image: bool = True
    dynamic_size: bool = False  # accepts other sizes than width x height (multiples of latent_factor)

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        return (self.latent_channels, height // self.latent_factor, width // self.latent_factor)


@runtime_checkable
class ModelRuntime(Protocol):
    info: ModelInfo
    execution_provider: str  # "CUDAExecutionProvider", ...; reported in the `started` event

    def encode_text(self, prompts: Sequence[str], styles: Sequence[str]) -> Cond:
        """Conditioning rows, one per prompt: arrays with a leading batch axis."""
        ...

    def denoiser(self, tiling: bool = False) -> DenoiseFn:
        """The raw (unbatched) `denoise(x, sigma, cond) -> x0` of the network."""
        ...

    def sigmas(self, steps: int) -> np.ndarray:
        """The sampling schedule for `steps` steps: float64, decreasing, ending in 0."""
        ...

    def decode(self, latents: np.ndarray, tiling: bool = False) -> np.ndarray:
        """Latents `[B, C, h, w]` -> RGBA uint8 `[B, H, W, 4]`."""
        ...

    def encode(self, images: np.ndarray) -> np.ndarray:
        """RGBA uint8 `[B, H, W, 4]` -> latents `[B, C, h, w]` (the mean, no sampling)."""
        ...

    def preview(self, latents: np.ndarray) -> np.ndarray:
        """A cheap look at latents: RGB uint8 `[B, h', w', 3]` of any small size."""
        ...


@dataclass(frozen=True, kw_only=True)
class UpscalerInfo(UpscalerFacts):
    """A loaded upscaler version: the facts upscales are planned against, and the sampler's constants."""

    sigma_data: float = 0.5  # inside the network's preconditioning; stated for reports

    @property
    def params(self) -> UpscaleParams:
        """What diffusion.upscale.upscale / upscale_fast take."""
        return UpscaleParams.from_spec(self)


@runtime_checkable
class UpscalerRuntime(Protocol):
    """A super-resolution version. Arrays are premultiplied RGBA float32 in [-1, 1], NCHW, at the
    high resolution; `low_res` is the upsampled (augmented) input, `up` in diffusion/upscale.py."""

    info: UpscalerInfo
    execution_provider: str

    def denoise(self, x: np.ndarray, sigma: np.ndarray, low_res: np.ndarray, aug: np.ndarray) -> np.ndarray:
        """x0 of the residual HR - up for the noisy residual `x` [N, 4, H, W] at `sigma` [N]."""
        ...

    def fast(self, low_res: np.ndarray) -> np.ndarray:
        """The deterministic network's residual for `low_res` [N, 4, H, W] (ValueError without one)."""
        ...

    def denoiser(self, tiling: bool = False) -> DenoiseFn:
        """`denoise` in the denoiser contract's shape, `(x, sigma, cond) -> x0` with
        cond = {"low_res": [N, 4, H, W], "aug_level": [N]}: what the batching denoiser stacks."""
        ...


def sr_denoise(denoise: DenoiseFn) -> SRDenoiser:
    """A contract-shaped `denoise(x, sigma, cond)` (an upscaler runtime's `denoiser()`, or the
    batching denoiser wrapping it) as the SR sampler's `denoise(x, sigma, low_res, aug)`."""

    def call(x: np.ndarray, sigma: np.ndarray, low_res: np.ndarray, aug: np.ndarray) -> np.ndarray:
        return denoise(x, sigma, {LOW_RES: low_res, AUG_LEVEL: np.asarray(aug, dtype=np.float32)})

    return call


RuntimeLoader = Callable[..., ModelRuntime | UpscalerRuntime]


def load_loader(spec: str) -> RuntimeLoader:
    """The function named by `"package.module:function"`."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"runtime loader {spec!r} is not of the form 'module:function'")
    return getattr(importlib.import_module(module), name)


def linear_preview(latents: np.ndarray, rgb_factors: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Latent -> RGB by a fixed `[C, 3]` projection (the usual cheap preview of latent models)."""
    rgb = np.einsum("bchw,cr->bhwr", np.asarray(latents, dtype=np.float32), rgb_factors)
    if bias is not None:
        rgb = rgb + bias
    return np.clip((rgb + 1.0) * 127.5, 0, 255).astype(np.uint8)
