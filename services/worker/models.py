"""The model versions a worker has loaded, and one batching denoiser per model and latent shape
where batching pays for that model on this machine (services/worker/batching_choice.py).

An upscaler is loaded like any version (the runtime loader returns an upscaler runtime for a
manifest with an ``upscaler`` section), next to the base models, and shares one batching
denoiser (:data:`UPSCALER_DENOISER`) among every job that upscales with it: its rows are tiles,
which stack whenever their shapes agree."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common import metrics
from services.worker.batching import BatchingDenoiser
from services.worker.batching_choice import PROBE_TIMEOUT_S, BatchingChoice, choice_for
from services.worker.runtime import ModelRuntime

log = logging.getLogger(__name__)


# The key of an upscaler's one batching denoiser (its calls carry their own shapes in `cond`).
UPSCALER_DENOISER = (0, 0, 0)


def _observed(denoise, name: str):
    """The runtime's denoiser, its calls still counted in the denoiser metrics (rows per call and
    seconds) that the batching denoiser reports when it runs."""
    rows_metric, call_metric = metrics.DENOISER_BATCH.labels(model=name), metrics.DENOISER_CALL.labels(model=name)

    def call(x, sigma, cond=None):
        started = time.perf_counter()
        try:
            return denoise(x, sigma, cond)
        finally:
            call_metric.observe(time.perf_counter() - started)
            rows_metric.observe(x.shape[0])

    return call


class ModelUnavailable(RuntimeError):
    """The requested model version cannot be loaded here (the job fails, the worker carries on)."""


@dataclass
class LoadedModel:
    runtime: ModelRuntime
    max_batch: int
    wait_ms: float
    # Off: every job calls the runtime's denoiser itself (no owner thread, no wait, no copy).
    batching: BatchingChoice = field(default_factory=lambda: BatchingChoice("on", True, reason="set on"))
    _denoisers: dict[tuple[bool, tuple[int, int, int]], BatchingDenoiser] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> str:
        return f"{self.runtime.info.name}/{self.runtime.info.version}"

    def denoiser(self, tiling: bool, latent_shape: tuple[int, int, int]):
        """The shared batching denoiser of this model for (tiling, latent shape), made on first use;
        with batching off, the runtime's own denoiser."""
        if not self.batching.batching:
            return _observed(self.runtime.denoiser(tiling), self.key)
        with self._lock:
            found = self._denoisers.get((tiling, latent_shape))
            if found is None:
                found = BatchingDenoiser(
                    self.runtime.denoiser(tiling), max_batch=self.max_batch, wait_ms=self.wait_ms, name=self.key
                )
                self._denoisers[(tiling, latent_shape)] = found
            return found

    def close(self) -> None:
        with self._lock:
            for d in self._denoisers.values():
                d.close()
            self._denoisers.clear()


class ModelRegistry:
    """Loads model versions on first use through `loader(model, version) -> ModelRuntime`."""

    def __init__(self, loader: Callable[[str, str], ModelRuntime], *, max_batch: int = 16, wait_ms: float = 2.0,
                 batching: str = "on", probe_timeout_s: float = PROBE_TIMEOUT_S):
        self.loader = loader
        self.probe_timeout_s = probe_timeout_s  # the longest a batching probe may delay a load
        self.max_batch, self.wait_ms = max_batch, wait_ms
        self.batching = batching  # ATELIER_BATCHING: a mode, or a default and model=mode entries
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._lock = threading.Lock()
        # Called with every loaded version's key after a load: the worker's heartbeat announces
        # each version it can serve (a version is ready where some live worker has it loaded).
        self.on_load: Callable[[tuple[str, ...]], None] | None = None

    def get(self, model: str, version: str = "") -> LoadedModel:
        loaded, new = self._get(model, version)
        if new and self.on_load is not None:
            self.on_load(self.keys())
        return loaded

    def keys(self) -> tuple[str, ...]:
        """"<name>/<version>" of every loaded version."""
        return tuple(sorted({m.key for m in self.loaded()}))

    def _get(self, model: str, version: str) -> tuple[LoadedModel, bool]:
        with self._lock:  # one load at a time: two jobs of a new model must not load it twice
            found = self._models.get((model, version))
            if found is not None:
                return found, False
            started = time.perf_counter()
            try:
                runtime = self.loader(model, version)
            except Exception as err:  # noqa: BLE001 - any load failure is the job's, not the worker's
                log.warning("cannot load model %s/%s: %s", model, version or "newest", err)
                raise ModelUnavailable(f"model {model}/{version or 'newest'} is unavailable: {err}") from err
            metrics.MODEL_LOAD.labels(model=runtime.info.name).observe(time.perf_counter() - started)
            choice = choice_for(self.batching, runtime, self.max_batch, self.probe_timeout_s)
            loaded = LoadedModel(runtime, self.max_batch, self.wait_ms, choice)
            self._models[(model, version)] = loaded
            log.info("loaded model %s on %s; batching %s (%s: %s)", loaded.key, runtime.execution_provider,
                     "on" if choice.batching else "off", choice.mode, choice.reason)
            return loaded, True

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())

    def close(self) -> None:
        for m in self.loaded():
            m.close()
