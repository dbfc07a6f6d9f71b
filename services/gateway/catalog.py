"""The model versions a gateway can accept jobs for, from the model repository.

Requests are validated against these entries (the sizes the manifest says the version
supports, styles, samplers, features) before anything is queued, and ListModels reports
them. A version whose manifest has an ``upscaler`` section is an upscaler: requests name it
in ``upscaler``, never in ``model``. A version with a ``concepts`` section is the output concept
classifier: no request names it, ListModels does not list it, and every plan whose content policy
blocks one of its concepts runs the newest version of ``concept_classifier`` (:meth:`ModelCatalog.concepts`).
Manifests are re-read at most every `refresh_seconds`, readiness (some worker has
the version loaded) at every look-up of :meth:`ModelCatalog.entries` with `with_readiness=True`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from diffusion.sampler_catalog import CATALOG, SAMPLER_NAMES
from repository.manifest import Manifest
from repository.reader import ModelRepository, ModelRepositoryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    manifest: Manifest
    sha256: str
    max_size: int
    ready: bool = False

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def latent_factor(self) -> int:
        return self.manifest.latent.factor

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the VAE's factor times what the UNet halves."""
        return self.manifest.latent.factor * self.manifest.unet.latent_multiple

    @property
    def other_sizes(self) -> bool:
        """Sizes other than the native one are accepted (multiples of size_multiple, up to max_size)."""
        return self.manifest.supported_sizes().other_sizes

    @property
    def min_size(self) -> int:
        """Smallest width or height accepted."""
        if self.other_sizes:
            return self.size_multiple
        return min(self.manifest.image.width, self.manifest.image.height)

    def supported_range(self) -> str:
        """The sizes it accepts, in words, for error messages and the command line."""
        native = f"{self.manifest.image.width}x{self.manifest.image.height}"
        if not self.other_sizes:
            return f"model {self.key} makes only its native {native}"
        return (f"model {self.key} makes sides of {self.min_size} to {self.max_size} pixels in steps of "
                f"{self.size_multiple} (native {native})")

    @property
    def styles(self) -> tuple[str, ...]:
        return self.manifest.styles

    @property
    def fast(self) -> bool:
        """A consistency-distilled model (docs/MODEL.md, "Fast mode"): 1-4 steps, guidance built in."""
        return self.manifest.unet.consistency

    @property
    def samplers(self) -> tuple[str, ...]:
        """Every worker runs every sampler for every model, but a consistency sampler draws only
        with a consistency model, and a consistency model only with one."""
        return tuple(s for s in SAMPLER_NAMES if CATALOG[s].consistency == self.fast)

    @property
    def supports_tiling(self) -> bool:
        return "circular" in self.manifest.unet.padding_modes or "tiling" in self.manifest.variants

    @property
    def supports_init_image(self) -> bool:
        return "vae_encoder" in self.manifest.components

    @property
    def is_upscaler(self) -> bool:
        return self.manifest.upscaler is not None

    @property
    def fast_upscaler(self) -> bool:
        """The upscaler also has the deterministic one-pass network."""
        return "upscaler_fast" in self.manifest.components


class ModelCatalog:
    def __init__(
        self,
        root: Path,
        default_model: str,
        max_side: int,
        ready_models: Callable[[], set[str]] = set,
        refresh_seconds: float = 10.0,
        default_upscaler: str = "atelier-upscale",
        concept_classifier: str = "atelier-concepts",
    ):
        self.repository = ModelRepository(root)
        self.default_model = default_model
        self.default_upscaler = default_upscaler
        self.concept_classifier = concept_classifier  # empty: no output concept check
        self._classifiers: list[ModelEntry] = []
        self.max_side = max_side
        self.ready_models = ready_models
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._loaded_at = -float("inf")
        self._entries: list[ModelEntry] = []

    def _scan(self) -> tuple[list[ModelEntry], list[ModelEntry]]:
        """(the versions requests can name, the concept classifiers' versions)."""
        found, classifiers = [], []
        for name in self.repository.models():
            for version in self.repository.versions(name):
                try:
                    opened = self.repository.open(name, version)
                except ModelRepositoryError as exc:
                    log.warning("model %s/%s is not offered: %s", name, version, exc)
                    continue
                m = opened.manifest
                if m.concepts is not None:
                    classifiers.append(ModelEntry(name, version, m, opened.manifest_sha256, m.concepts.image_size))
                    continue
                sizes = m.supported_sizes()
                native_side = max(m.image.width, m.image.height)
                max_size = min(self.max_side, sizes.max_side) if sizes.other_sizes else native_side
                found.append(ModelEntry(name, version, m, opened.manifest_sha256, max_size))
        return found, classifiers

    def _current(self) -> list[ModelEntry]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self.refresh_seconds:
                self._entries, self._classifiers = self._scan()
                self._loaded_at = time.monotonic()
            return self._entries

    def entries(self, with_readiness: bool = False) -> list[ModelEntry]:
        """Every version, sorted by name then version (numerically)."""
        entries = self._current()
        if with_readiness:
            ready = self.ready_models()
            entries = [replace(e, ready=e.key in ready) for e in entries]
        return entries

    def resolve(self, name: str, version: str) -> ModelEntry | None:
        """The entry a request means: empty name -> the default model; empty version ->
        the newest version some worker has ready, else the newest."""
        name = name or self.default_model
        candidates = [e for e in self._current() if e.name == name]
        if version:
            return next((e for e in candidates if e.version == version), None)
        if not candidates:
            return None
        ready = self.ready_models()
        ready_ones = [e for e in candidates if e.key in ready]
        return (ready_ones or candidates)[-1]

    def has_model(self, name: str) -> bool:
        name = name or self.default_model
        return any(e.name == name for e in self._current())

    def concepts(self) -> ModelEntry | None:
        """The output concept classifier every checked job runs: the newest version of
        ``concept_classifier`` (None: none installed, or the check is off)."""
        self._current()
        found = [e for e in self._classifiers if e.name == self.concept_classifier]
        return found[-1] if found else None

    def resolve_upscaler(self, name: str, version: str) -> ModelEntry | None:
        """The upscaler a request means (empty name: the default upscaler), as :meth:`resolve`."""
        return self.resolve(name or self.default_upscaler, version)
