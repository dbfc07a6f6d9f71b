#!/usr/bin/env bash
# GPU check of the export stage (issue 5): driver facts, then parity and timings of
# TensorRT / CUDA / CPU on one model (bench/gpu_check.py). Run from the repository root on a
# machine with an NVIDIA GPU and the project's environment (`make setup`, plus
# onnxruntime-gpu's CUDA 12 / cuDNN 9 / TensorRT 10 libraries):
#     bash bench/gpu_check.sh [--model atelier-emoji]
# Takes 2-5 minutes, most of it the TensorRT engine build (cached for the second load).
set -euo pipefail
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "nvidia-smi not found"
"$PY" - <<'PY'
import ctypes, onnxruntime as ort
print("onnxruntime", ort.__version__, ort.get_available_providers())
for lib in ("libcuda.so.1", "libcudart.so.12", "libcudnn.so.9", "libnvinfer.so.10"):
    try:
        ctypes.CDLL(lib); print("loads:", lib)
    except OSError as e:
        print("missing:", lib, e)
PY
exec "$PY" -m bench.gpu_check "$@"
