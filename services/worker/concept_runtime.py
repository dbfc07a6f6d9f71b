"""The output concept classifier on ONNX Runtime (docs/MODEL_REPOSITORY.md, "Concept classifiers").

Loaded through the hash-checking reader like every version (only listed files whose bytes match
the manifest, never a pickle), on the worker's providers (services/worker/onnx_sessions.py), and
warmed up at load. ``probabilities(rgba)`` takes a chunk's final straight-alpha RGBA uint8 images,
of any size, and returns each concept's probability (the sigmoid of the network's logits); an
image shows a concept when it is at or over the manifest's threshold for it (``info.thresholds``).

Inputs other than the network's size are brought to it on premultiplied values (a transparent
pixel carries no colour): a square image whose side is a multiple of it by the mean of each block
(the base data's box filter, so a x4 upscale of a 32² image is judged on what is almost that
image), any other image by an area resize of the whole frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from diffusion.resample import downsample
from repository import providers as prov
from repository.reader import ModelRepository, ModelVersion
from services.common.settings import Settings
from services.worker import images, onnx_sessions
from services.worker.models import ModelUnavailable

log = logging.getLogger(__name__)
ROLE = "concept_classifier"


@dataclass(frozen=True)
class ConceptInfo:
    name: str
    version: str
    sha256: str  # of manifest.json
    concepts: tuple[str, ...]
    thresholds: tuple[float, ...]
    image_size: int


def to_input(rgba: np.ndarray, side: int) -> np.ndarray:
    """Straight RGBA uint8 [B, H, W, 4] -> premultiplied float32 [B, 4, side, side] in [-1, 1]."""
    x = images.premultiplied(rgba)
    h, w = x.shape[-2:]
    if h == w == side:
        return x
    if h == w and h % side == 0:
        return np.ascontiguousarray(downsample(x, h // side))
    planes = [[np.asarray(Image.fromarray(plane).resize((side, side), Image.Resampling.BOX))
               for plane in image] for image in x]
    return np.ascontiguousarray(np.asarray(planes, dtype=np.float32))


class OnnxConceptRuntime:
    def __init__(self, version: ModelVersion, settings: Settings | None = None,
                 providers: Sequence[str] | None = None, warm_up: bool = True):
        m = version.manifest
        if m.concepts is None:
            raise ValueError(f"model {m.name}/{m.version} is not a concept classifier "
                             "(its manifest has no `concepts` section)")
        self.settings = settings or Settings()
        self.providers = list(providers) if providers else prov.resolve(self.settings.execution_providers)
        self.execution_provider = self.providers[0]
        variant = onnx_sessions.variant_for(self.providers, self.settings.onnx_variant)
        side = m.concepts.image_size
        self.info = ConceptInfo(m.name, m.version, version.manifest_sha256, m.concepts.concepts,
                                m.concepts.thresholds, side)
        trt = lambda: onnx_sessions.trt_options(  # noqa: E731
            self.settings, f"image:1x4x{side}x{side}", f"image:8x4x{side}x{side}", f"image:64x4x{side}x{side}")
        self._session, seconds = onnx_sessions.open_session(
            version, m.file_for(ROLE, variant), onnx_sessions.session_options(self.settings),
            onnx_sessions.provider_options(self.providers, trt))
        self.load_seconds = {m.file_for(ROLE, variant): seconds}
        if warm_up:
            start = time.perf_counter()
            self.probabilities(np.zeros((1, side, side, 4), np.uint8))
            self.load_seconds["warm_up"] = time.perf_counter() - start

    def probabilities(self, rgba: np.ndarray) -> np.ndarray:
        """[B, concepts] float32: each concept's probability for each image."""
        logits = self._session.run(None, {"image": to_input(rgba, self.info.image_size)})[0]
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def load_concept_classifier(settings: Settings, model: str, version: str | None = None,
                            **kwargs) -> OnnxConceptRuntime:
    """A hash-checked concept-classifier version on the worker's providers."""
    opened = ModelRepository(settings.model_repository).open(model, version or None)
    opened.verify()
    return OnnxConceptRuntime(opened, settings, **kwargs)


class ConceptClassifiers:
    """The concept-classifier versions a worker has loaded, each once (a job asks for the version its plan names)."""

    def __init__(self, loader: Callable[[str, str], OnnxConceptRuntime]):
        self.loader = loader
        self._loaded: dict[tuple[str, str], OnnxConceptRuntime] = {}
        self._lock = threading.Lock()

    def get(self, model: str, version: str) -> OnnxConceptRuntime:
        with self._lock:
            found = self._loaded.get((model, version))
            if found is None:
                try:
                    found = self._loaded[(model, version)] = self.loader(model, version)
                except Exception as err:  # noqa: BLE001 - any load failure is the job's, not the worker's
                    log.warning("cannot load concept classifier %s/%s: %s", model, version, err)
                    raise ModelUnavailable(f"concept classifier {model}/{version} is unavailable: {err}") from err
                log.info("loaded concept classifier %s/%s on %s", model, version, found.execution_provider)
            return found
