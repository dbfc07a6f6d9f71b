"""What the image pipeline needs from a loaded model: the `ModelRuntime` protocol.

The ONNX Runtime implementation (model repository, provider selection, warm-up) plugs in
behind this protocol; the pipeline, the batching denoiser and the tests only see it. A
runtime is loaded by the function that `Settings.runtime_loader` names
(`"module:function"`, called as `load(settings, model, version) -> ModelRuntime`).

Latents are float32 `[B, C, h, w]` already scaled for the denoiser; images are uint8
`[B, H, W, 4]` straight-alpha RGBA.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from services.common.plan import ModelFacts

Cond = Mapping[str, np.ndarray]
DenoiseFn = Callable[[np.ndarray, np.ndarray, Cond | None], np.ndarray]


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


RuntimeLoader = Callable[..., ModelRuntime]


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
