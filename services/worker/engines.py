"""TensorRT engines through ONNX Runtime's TensorRT execution provider: a worker-side step.

No separate `.plan` files in the repository: ORT builds an engine per ONNX file (fp16,
optimisation profiles for batch 1..max_batch) and keeps it in the engine cache
(`ATELIER_TRT_ENGINE_CACHE`), keyed by the model and the GPU. Loading the version as a
worker does, right after an export (`atelier export --tensorrt`), fills that cache so the
first job on a worker does not wait minutes for it; a worker that starts on a different GPU
model builds its own. Engines are never committed: they
are specific to the GPU, the driver and the TensorRT version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from repository.providers import TENSORRT, ProviderUnavailable, require
from services.common.settings import Settings
from services.worker.onnx_runtime import load_runtime


class TensorRTUnavailable(RuntimeError):
    """TensorRT was asked for on a machine where it cannot run."""


def require_tensorrt() -> None:
    try:
        require(TENSORRT)
    except ProviderUnavailable as exc:
        raise TensorRTUnavailable(
            f"--tensorrt needs an NVIDIA GPU with TensorRT: {exc}. Export without --tensorrt; "
            "workers on GPU machines build the engines on first load (ATELIER_EXECUTION_PROVIDERS=auto)."
        ) from None


def build_engines(repository: Path, name: str, version: str, progress: Callable[[str], None]) -> dict[str, float]:
    """Load the version with the TensorRT provider (which builds and caches every engine);
    returns seconds per component."""
    require_tensorrt()

    settings = Settings.from_env(model_repository=Path(repository), execution_providers="tensorrt,cuda,cpu")
    start = time.perf_counter()
    runtime = load_runtime(settings, name, version)
    progress(f"TensorRT engines built in {time.perf_counter() - start:.1f} s ({runtime.execution_provider})")
    return dict(runtime.load_seconds)
