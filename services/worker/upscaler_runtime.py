"""The x4 upscaler on ONNX Runtime (implements services.worker.runtime.UpscalerRuntime).

Loads an upscaler version through the hash-checking reader (the same safe loading as the base
model's runtime: only listed files whose bytes match the manifest, never a pickle), on the same
providers and variant choice (services/worker/onnx_sessions.py), warms its networks up at the
tile size, and exposes over numpy:

    denoise(x, sigma, low_res, aug) -> x0 of the residual      one ORT call
    fast(low_res) -> residual                                   the deterministic network
    denoiser() -> (x, sigma, cond) -> x0                        for the batching denoiser

`denoiser()` puts the upscaler's extra inputs in the denoiser contract's `cond` mapping
({"low_res", "aug_level"}, each with a leading batch axis), so the one batching denoiser of
services/worker/batching.py stacks SR rows of many jobs (same tile shape) exactly as it stacks
UNet rows, with no code of its own. Sampling itself is diffusion/upscale.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from repository import providers as prov
from repository.reader import ModelRepository, ModelVersion
from services.common.settings import Settings
from services.worker import onnx_sessions
from services.worker.onnx_sessions import variant_for
from services.worker.runtime import AUG_LEVEL, LOW_RES, UpscalerInfo

log = logging.getLogger(__name__)

Cond = Mapping[str, np.ndarray]


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


class OnnxUpscalerRuntime:
    def __init__(self, version: ModelVersion, settings: Settings | None = None,
                 providers: Sequence[str] | None = None, warm_up: bool = True):
        m = version.manifest
        if m.upscaler is None:
            raise ValueError(f"model {m.name}/{m.version} is not an upscaler (its manifest has no `upscaler` section)")
        self.version = version
        self.manifest = m
        self.settings = settings or Settings()
        self.providers = list(providers) if providers else prov.resolve(self.settings.execution_providers)
        self.execution_provider = self.providers[0]
        self.variant = variant_for(self.providers, self.settings.onnx_variant)
        self.load_seconds: dict[str, float] = {}
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._lock = threading.Lock()
        self.info = UpscalerInfo.of(m.name, m.version, version.manifest_sha256, m.upscaler,
                                    fast="upscaler_fast" in m.components)
        for role in ("upscaler", "upscaler_fast"):
            if role in m.components:
                self._session(role)
        log.info("upscaler %s/%s on %s (variant %s), sessions in %s", m.name, m.version, self.execution_provider,
                 self.variant, {k: round(v, 2) for k, v in self.load_seconds.items()})
        if warm_up:
            self.warm_up()

    # --- sessions

    def _trt_options(self, role: str) -> dict[str, Any]:
        """Profiles for batch 1..max_batch, sides up to the HR tile (the sampler never runs larger)."""
        c, small, side = 4, self.info.size_multiple, self.info.tile * self.info.factor
        max_b = max(16, int(self.settings.max_batch))

        def shapes(b: int, s: int) -> str:
            image = f"{b}x{c}x{s}x{s}"
            if role == "upscaler_fast":
                return f"{LOW_RES}:{image}"
            return f"sample:{image},sigma:{b},{LOW_RES}:{image},{AUG_LEVEL}:{b}"

        return onnx_sessions.trt_options(self.settings, shapes(1, small), shapes(min(8, max_b), side),
                                         shapes(max_b, side))

    def _session(self, role: str) -> ort.InferenceSession:
        with self._lock:
            session = self._sessions.get(role)
            if session is None:
                file = self.manifest.file_for(role, self.variant)
                session, seconds = onnx_sessions.open_session(
                    self.version, file, onnx_sessions.session_options(self.settings),
                    onnx_sessions.provider_options(self.providers, lambda: self._trt_options(role)))
                self._sessions[role] = session
                self.load_seconds[file] = seconds
            return session

    def warm_up(self) -> None:
        """One call per network at batch 1 and the HR tile size: allocations and kernel choices
        happen here, not in a user's job."""
        start = time.perf_counter()
        side = self.info.tile * self.info.factor
        x = np.zeros((1, 4, side, side), np.float32)
        self.denoise(x, np.full(1, self.info.sigma_max, np.float32), x, np.full(1, self.info.aug_level, np.float32))
        if self.info.fast:
            self.fast(x)
        self.load_seconds["warm_up"] = time.perf_counter() - start

    # --- networks

    def denoise(self, x: np.ndarray, sigma: np.ndarray, low_res: np.ndarray, aug: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        feeds = {"sample": _f32(x), "sigma": _f32(np.broadcast_to(np.asarray(sigma).reshape(-1), (n,))),
                 LOW_RES: _f32(low_res), AUG_LEVEL: _f32(np.broadcast_to(np.asarray(aug).reshape(-1), (n,)))}
        return self._session("upscaler").run(None, feeds)[0]

    def fast(self, low_res: np.ndarray) -> np.ndarray:
        if not self.info.fast:
            raise ValueError(f"upscaler {self.info.name}/{self.info.version} has no fast network")
        return self._session("upscaler_fast").run(None, {LOW_RES: _f32(low_res)})[0]

    def denoiser(self, tiling: bool = False) -> Callable[[np.ndarray, np.ndarray, Cond | None], np.ndarray]:
        if tiling:
            raise ValueError("the upscaler has no circular-padding networks: it tiles large inputs itself")

        def denoise(x: np.ndarray, sigma: np.ndarray, cond: Cond | None) -> np.ndarray:
            if cond is None or LOW_RES not in cond or AUG_LEVEL not in cond:
                raise ValueError(f"the upscaler's denoiser needs cond with {LOW_RES!r} and {AUG_LEVEL!r}")
            return self.denoise(x, sigma, cond[LOW_RES], cond[AUG_LEVEL])

        return denoise


def load_upscaler(settings: Settings, model: str, version: str | None = None, **kwargs: Any) -> OnnxUpscalerRuntime:
    """A hash-checked upscaler version on the best providers."""
    opened = ModelRepository(settings.model_repository).open(model, version or None)
    opened.verify()
    return OnnxUpscalerRuntime(opened, settings, **kwargs)
