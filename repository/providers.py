"""Which ONNX Runtime execution providers really work on this machine.

onnxruntime-gpu lists TensorRT and CUDA as *available* on any machine (the provider
libraries ship in the wheel); whether they *work* depends on the NVIDIA driver, a GPU,
and (for TensorRT) libnvinfer. Asking ORT to use one that does not work logs a page of
errors and silently falls back to CPU. So: cheap checks first (can the driver library be
loaded, does it see a GPU, is libnvinfer there), then a tiny probe session with ORT's own
logging muted, keeping the provider only if the session really runs on it. The result is
logged once and cached for the process.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import logging
from dataclasses import dataclass

import onnxruntime as ort

log = logging.getLogger(__name__)

TENSORRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
ORDER = (TENSORRT, CUDA, CPU)
ALIASES = {"tensorrt": TENSORRT, "trt": TENSORRT, "cuda": CUDA, "cpu": CPU}

# y = x + x over float[1, 4]: the smallest model every provider can run (opset 17, IR 8).
_PROBE = base64.b64decode(
    "CAg6QQoOCgF4CgF4EgF5IgNBZGQSBXByb2JlWhMKAXgSDgoMCAESCAoCCAEKAggEYhMKAXkSDgoMCAESCAoCCAEKAggEQgQKABAR"
)


class ProviderUnavailable(RuntimeError):
    """An execution provider was asked for by name but does not work here."""


@dataclass(frozen=True)
class ProviderReport:
    usable: tuple[str, ...]
    reasons: dict[str, str]      # provider -> why it is not usable


def _load_library(*names: str) -> str | None:
    """Name of the first shared library that loads, or None."""
    for name in names:
        try:
            ctypes.CDLL(name)
            return name
        except OSError:
            continue
    return None


def _gpu_count() -> tuple[int, str]:
    if _load_library("libcuda.so.1", "libcuda.so", "nvcuda.dll") is None:
        return 0, "no NVIDIA driver (libcuda.so.1 cannot be loaded)"
    lib = ctypes.CDLL("libcuda.so.1")
    if lib.cuInit(0) != 0:
        return 0, "the NVIDIA driver found no usable GPU (cuInit failed)"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return 0, "the NVIDIA driver reports no GPU"
    return count.value, ""


def _probe(provider: str) -> str:
    """'' when a session really runs on `provider`, else the reason."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)   # the provider-library load errors go to the default logger
    try:
        session = ort.InferenceSession(_PROBE, options, providers=[provider, CPU])
        if session.get_providers()[0] != provider:
            return "ONNX Runtime could not initialise it (missing CUDA/cuDNN/TensorRT libraries?)"
        import numpy as np

        session.run(None, {"x": np.ones((1, 4), np.float32)})
        return ""
    except Exception as exc:  # any failure means "not usable"; the reason is reported
        return f"ONNX Runtime failed to use it: {exc}"
    finally:
        ort.set_default_logger_severity(2)


@functools.lru_cache(maxsize=1)
def detect() -> ProviderReport:
    """Providers that work here, best first, and why the others do not."""
    compiled = set(ort.get_available_providers())
    reasons: dict[str, str] = {}
    for name in (TENSORRT, CUDA):
        if name not in compiled:
            reasons[name] = "not in this onnxruntime build (install onnxruntime-gpu)"
    if CUDA not in reasons or TENSORRT not in reasons:
        gpus, why = _gpu_count()
        if not gpus:
            reasons.setdefault(CUDA, why)
            reasons.setdefault(TENSORRT, why)
    if CUDA not in reasons and (why := _probe(CUDA)):
        reasons[CUDA] = why
    if TENSORRT not in reasons:
        if _load_library("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so") is None:
            reasons[TENSORRT] = "TensorRT libraries (libnvinfer) are not installed"
        elif CUDA in reasons:
            reasons[TENSORRT] = "needs the CUDA provider, which is not usable: " + reasons[CUDA]
        elif why := _probe(TENSORRT):
            reasons[TENSORRT] = why
    usable = tuple(p for p in ORDER if p not in reasons)
    log.info("ONNX Runtime providers usable: %s%s", ", ".join(usable),
             "".join(f"; {p} not: {r}" for p, r in reasons.items()))
    return ProviderReport(usable, reasons)


def resolve(spec: str = "auto") -> list[str]:
    """Providers to use, best first. `auto`: TensorRT -> CUDA -> CPU as really usable; a list
    (`tensorrt,cuda,cpu` or ORT's names) is honoured exactly, and a named provider that does
    not work raises ProviderUnavailable instead of quietly running on the CPU."""
    report = detect()
    if spec.strip().lower() in ("", "auto"):
        return list(report.usable)
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        name = ALIASES.get(item.lower(), item)
        if name not in ORDER:
            raise ProviderUnavailable(f"unknown execution provider {item!r}; use tensorrt, cuda, cpu or auto")
        if name not in report.usable:
            raise ProviderUnavailable(f"{name} was asked for but is not usable here: {report.reasons.get(name)}")
        chosen.append(name)
    return chosen


def require(provider: str) -> None:
    """Raise ProviderUnavailable with the reason when `provider` does not work here."""
    report = detect()
    if provider not in report.usable:
        raise ProviderUnavailable(f"{provider} is not usable here: {report.reasons.get(provider)}")
