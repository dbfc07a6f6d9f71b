"""ONNX Runtime sessions over verified repository files: options, providers, variant choice.

Shared by every runtime a worker loads (the base model's, services/worker/onnx_runtime.py, and
the upscaler's, services/worker/upscaler_runtime.py), so both open files the same safe way and
run with the same thread and provider settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import onnxruntime as ort

from repository import providers as prov
from repository.reader import ModelVersion
from services.common.settings import Settings

# Which variant each provider prefers when the version has it: TensorRT makes its own fp16
# engines from the fp32 graph; CUDA runs the fp16 file on tensor cores; the CPU runs the
# offline-optimised file (fusions done at export).
PREFERRED_VARIANT = {prov.TENSORRT: "default", prov.CUDA: "fp16", prov.CPU: "optimized"}

ProviderList = list[tuple[str, dict[str, Any]] | str]


def variant_for(providers: Sequence[str], wanted: str) -> str:
    """The file variant to run: `wanted` (ATELIER_ONNX_VARIANT), or on `auto` the first provider's preference."""
    return PREFERRED_VARIANT[providers[0]] if wanted == "auto" else wanted


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(settings.onnx_intra_op_threads)
    # Sampler threads already overlap; ORT's own inter-op pool would only oversubscribe.
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Denormal floats (tiny activations late in sampling) run many times slower on x86 CPUs;
    # flushing them to zero changes no image and keeps step times steady.
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    # Idle pool threads block instead of spin-waiting for the next run: one worker holds a
    # pool per session (text encoder, UNet, decoder) and its Redis client, Celery and the
    # gateway share the cores; spinning pools starve them all (the default model's default
    # job, interleaved on the shared 2-core machine: 1178 -> 578 ms median; a Submit right
    # after a run: 17 -> 3 ms). On GPU providers these threads do little either way.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def trt_options(settings: Settings, min_shapes: str, opt_shapes: str, max_shapes: str) -> dict[str, Any]:
    """fp16 engines cached on disk, with one optimisation profile (ORT's `input:AxBxC,...` syntax)."""
    cache = str(settings.trt_engine_cache)
    return {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True, "trt_timing_cache_path": cache,
            "trt_profile_min_shapes": min_shapes, "trt_profile_opt_shapes": opt_shapes,
            "trt_profile_max_shapes": max_shapes}


def provider_options(providers: Sequence[str], trt: Callable[[], dict[str, Any]]) -> ProviderList:
    out: ProviderList = []
    for name in providers:
        if name == prov.TENSORRT:
            out.append((name, trt()))
        elif name == prov.CUDA:
            out.append((name, {"cudnn_conv_algo_search": "HEURISTIC", "arena_extend_strategy": "kSameAsRequested"}))
        else:
            out.append(name)
    return out


def open_session(version: ModelVersion, file: str, options: ort.SessionOptions,
                 providers: ProviderList) -> tuple[ort.InferenceSession, float]:
    """A session of a listed file, built from the bytes that were hashed; and the seconds it took."""
    start = time.perf_counter()
    verified = version.onnx_file(file)
    if verified.has_external_data or any(p == prov.TENSORRT or (isinstance(p, tuple) and p[0] == prov.TENSORRT)
                                         for p in providers):
        # External weights are read by path from the (already verified) folder;
        # TensorRT names its engine cache after the model path.
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(version.path))
        source: Any = str(verified.path)
    else:
        source = verified.data
    session = ort.InferenceSession(source, options, providers=providers)
    return session, time.perf_counter() - start
