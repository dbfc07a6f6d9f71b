"""Parity: the same random inputs through PyTorch and ONNX Runtime, at batch 1 and 4.

Max absolute error and cosine similarity per output go to parity.json; an export whose
ONNX file misses its tolerance fails, naming the file, the case and the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.component import Component, Tolerance

BATCHES = (1, 4)


class ParityError(RuntimeError):
    """An ONNX file's outputs differ from PyTorch's beyond its tolerance."""


@dataclass(frozen=True)
class Case:
    name: str            # "batch1", "batch4", "size2x"
    max_abs: float
    cosine: float
    scale: float         # max |torch output|

    def passes(self, tol: Tolerance) -> bool:
        return self.max_abs <= tol.max_abs * max(1.0, self.scale) and self.cosine >= tol.min_cosine

    def to_dict(self) -> dict[str, float]:
        return {"max_abs": self.max_abs, "cosine": self.cosine, "torch_max_abs": self.scale}


def compare(ref: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    ref64, out64 = ref.astype(np.float64).ravel(), out.astype(np.float64).ravel()
    if ref64.shape != out64.shape:
        raise ParityError(f"shape {out.shape} differs from PyTorch's {ref.shape}")
    denom = np.linalg.norm(ref64) * np.linalg.norm(out64)
    cosine = float(ref64 @ out64 / denom) if denom > 0 else float(np.array_equal(ref64, out64))
    return float(np.max(np.abs(ref64 - out64), initial=0.0)), cosine, float(np.max(np.abs(ref64), initial=0.0))


def cpu_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _double_size(component: Component, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Same inputs with every dynamic spatial axis doubled (checks the dynamic-size claim)."""
    grown = []
    for name, t in zip(component.input_names, inputs, strict=True):
        axes = [a for a in component.dynamic_axes.get(name, {}) if a >= 2]
        for a in axes:
            t = torch.cat([t, t.flip(a)], dim=a)
        grown.append(t)
    return tuple(grown)


def check(component: Component, onnx_path: Path, tolerance: Tolerance, seed: int = 0) -> dict:
    """Run the cases; returns the parity.json entry of `onnx_path`, or raises ParityError."""
    session = cpu_session(onnx_path)
    wanted = {i.name for i in session.get_inputs()}
    cases: list[Case] = []
    plans = [(f"batch{b}", b, False) for b in BATCHES]
    if component.dynamic_size:
        plans.append(("size2x", 1, True))
    for name, batch, grow in plans:
        inputs = component.example(batch, torch.Generator().manual_seed(seed + batch))
        if grow:
            inputs = _double_size(component, inputs)
        with torch.no_grad():
            ref = component.module(*inputs).float().numpy()
        feeds = {n: t.numpy() for n, t in zip(component.input_names, inputs, strict=True) if n in wanted}
        out = session.run(None, feeds)[0]
        cases.append(Case(name, *compare(ref, out)))
    entry = {
        "role": component.role,
        "tolerance": {"max_abs_relative": tolerance.max_abs, "min_cosine": tolerance.min_cosine},
        "cases": {c.name: c.to_dict() for c in cases},
        "max_abs": max(c.max_abs for c in cases),
        "min_cosine": min(c.cosine for c in cases),
        "passed": all(c.passes(tolerance) for c in cases),
    }
    if not entry["passed"]:
        bad = next(c for c in cases if not c.passes(tolerance))
        raise ParityError(
            f"{onnx_path.name}: ONNX Runtime differs from PyTorch at {bad.name}: max abs error {bad.max_abs:.3g} "
            f"(allowed {tolerance.max_abs * max(1.0, bad.scale):.3g}), cosine {bad.cosine:.6f} "
            f"(needs >= {tolerance.min_cosine})"
        )
    return entry
