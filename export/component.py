"""One exportable network: a torch module with named inputs, random example inputs, and the
parity tolerance its ONNX files must meet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Tolerance:
    """Pass when cosine similarity >= `min_cosine` and max |onnx - torch| <= `max_abs` times
    max(1, max |torch|) (relative to the output's scale, so a decoder with outputs near 1 and
    a UNet with outputs near 80 are judged alike)."""

    max_abs: float = 1e-3
    min_cosine: float = 0.99999


FP32 = Tolerance()
OPTIMIZED = Tolerance(max_abs=2e-3, min_cosine=0.99999)
# Weights rounded to fp16, arithmetic in fp32.
FP16_WEIGHTS = Tolerance(max_abs=2e-2, min_cosine=0.9999)
# Matmuls in fp16: each layer adds ~1e-3 relative error, a deep net accumulates it.
FP16 = Tolerance(max_abs=5e-2, min_cosine=0.999)

# example(batch, generator) -> one tensor per input name, in order
ExampleFn = Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]


@dataclass
class Component:
    role: str                                  # "unet", "vae_decoder", "vae_encoder", "text_encoder"
    module: nn.Module                          # forward(*inputs) -> one tensor
    input_names: tuple[str, ...]
    output_name: str
    example: ExampleFn
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    tolerance: Tolerance = FP32
    fp16_tolerance: Tolerance = FP16
    store_fp16_weights: bool = False           # big embeddings: halve the files (see onnx_files)
    dynamic_size: bool = False                 # also checked at twice the example size
    variant: str = "default"                   # "tiling" for the circular-padding twin

    @property
    def file_stem(self) -> str:
        return self.role if self.variant == "default" else f"{self.role}_{self.variant}"
