"""The worker's model runtime on ONNX Runtime (implements services.worker.runtime.ModelRuntime).

Loads one repository version through the hash-checking reader, picks the providers
(TensorRT -> CUDA -> CPU as really usable, repository.providers), opens one session per
network, warms them up, and exposes the project's contracts over numpy:

    encode_text(prompts, styles) -> cond          dict of UNet conditioning inputs, [B, ...]
    denoise(x, sigma, cond) -> x0                 Contracts: denoiser; eps/v networks via diffusion.denoisers
    decode(latents) -> uint8 RGBA [B, H, W, 4]    straight alpha
    encode(images) -> latents                     posterior mean, scaled for the UNet

No torch here (docs/ARCHITECTURE.md, Contracts: layers): a worker image holds onnxruntime, numpy and tokenizers only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from diffusion.denoisers import VPDenoiser
from diffusion.guidance import GUIDANCE_INPUT
from diffusion.schedules import alphas_cumprod_from_betas, betas_for, karras_sigmas, sampling_sigmas, vp_sigmas
from repository import providers as prov
from repository.manifest import Manifest
from repository.reader import ModelRepository, ModelVersion
from services.common.settings import Settings
from services.worker import onnx_sessions
from services.worker.onnx_sessions import PREFERRED_VARIANT, variant_for
from services.worker.runtime import ModelInfo
from services.worker.upscaler_runtime import OnnxUpscalerRuntime

log = logging.getLogger(__name__)

Cond = Mapping[str, np.ndarray]
__all__ = ["PREFERRED_VARIANT", "STATIC_BATCHES", "OnnxModelRuntime", "load_runtime"]
# UNet batch sizes that run, on the CPU, in a session of their own with every dimension fixed
# (at the model's default size): ORT then folds into constants the ~1000 shape-arithmetic nodes
# the tracer writes around each reshape, and plans memory once. Measured on the default UNet,
# 1 thread (docs/BENCHMARKS.md, Engines): batch 1 4.96 -> 4.41 ms, batch 2 8.26 -> 7.56 ms; from
# batch 4 on compute dominates and nothing changes. A job alone with guidance is batch 2, without
# it batch 1. Each such session holds its own copy of the UNet's weights.
STATIC_BATCHES = (1, 2)


class OnnxModelRuntime:
    def __init__(self, version: ModelVersion, settings: Settings | None = None,
                 providers: Sequence[str] | None = None, warm_up: bool = True):
        settings = settings or Settings()
        self.version = version
        self.manifest: Manifest = version.manifest
        self.settings = settings
        self.providers = list(providers) if providers else prov.resolve(settings.execution_providers)
        self.execution_provider = self.providers[0]
        self.variant = variant_for(self.providers, settings.onnx_variant)
        self.load_seconds: dict[str, float] = {}
        self._sessions: dict[tuple[str, bool, tuple], ort.InferenceSession] = {}
        self._lock = threading.Lock()
        self._text_cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._text_cache_size = int(settings.text_cache_size)
        m = self.manifest
        self._tokenizer: Tokenizer | None = None
        if "text_encoder" in m.components:       # unconditional models have none
            tok = Tokenizer.from_str(version.text("tokenizer"))
            tok.enable_truncation(max_length=m.text_encoder.max_tokens)
            tok.enable_padding(length=m.text_encoder.max_tokens, pad_id=m.text_encoder.pad_token_id)
            self._tokenizer = tok
        if m.schedule.kind == "discrete":
            betas = betas_for(m.schedule.beta_schedule, m.schedule.num_train_timesteps,
                              **{k: v for k, v in (("beta_start", m.schedule.beta_start),
                                                   ("beta_end", m.schedule.beta_end)) if v is not None})
            self._alphas_cumprod = alphas_cumprod_from_betas(betas)
        self.info = ModelInfo(
            name=m.name, version=m.version, sha256=version.manifest_sha256, width=m.image.width,
            height=m.image.height, latent_channels=m.latent.channels, latent_factor=m.latent.factor,
            styles=tuple(m.styles), default_sampler=m.defaults.sampler, default_steps=m.defaults.steps,
            default_guidance_scale=m.defaults.guidance_scale, supports_tiling="tiling" in m.variants,
            supports_init_image="vae_encoder" in m.components, dynamic_size=m.latent.dynamic_size,
            consistency=m.unet.consistency, guidance_input=m.unet.guidance_input,
        )
        for role in ("text_encoder", "unet", "vae_decoder"):
            if role in m.components:
                self._session(role)
        log.info("model %s/%s on %s (variant %s), sessions in %s", m.name, m.version, self.execution_provider,
                 self.variant, {k: round(v, 2) for k, v in self.load_seconds.items()})
        if warm_up:
            self.warm_up()

    # --- sessions

    def _file(self, role: str, tiling: bool) -> str:
        m = self.manifest
        if tiling:
            if "tiling" not in m.variants:
                raise ValueError(f"model {m.name}/{m.version} has no tiling networks (export with --tiling)")
            variant = "tiling" if self.variant == "default" else f"tiling-{self.variant}"
            if role not in m.variants.get(variant, {}):
                variant = "tiling"
            return m.file_for(role, variant)
        return m.file_for(role, self.variant)

    def _options(self) -> ort.SessionOptions:
        return onnx_sessions.session_options(self.settings)

    def _provider_options(self, role: str) -> onnx_sessions.ProviderList:
        return onnx_sessions.provider_options(self.providers, lambda: self._trt_options(role))

    def _trt_options(self, role: str) -> dict[str, Any]:
        """fp16 engines, cached on disk, with profiles for batch 1..max_batch at the default size."""
        m = self.manifest
        max_b = max(m.unet.max_batch, int(self.settings.max_batch))
        c, h, w, L = m.latent.channels, m.latent.height, m.latent.width, m.text_encoder.max_tokens
        shapes = {
            "unet": lambda b: ",".join([f"sample:{b}x{c}x{h}x{w}", f"sigma:{b}", f"timestep:{b}",
                                        f"encoder_hidden_states:{b}x{L}x{m.text_encoder.hidden_size}",
                                        f"encoder_attention_mask:{b}x{L}", f"style:{b}", f"guidance:{b}"]),
            "vae_decoder": lambda b: f"latent:{b}x{c}x{h}x{w}",
            "vae_encoder": lambda b: f"image:{b}x{m.image.channels}x{m.image.height}x{m.image.width}",
            "text_encoder": lambda b: f"input_ids:{b}x{L},attention_mask:{b}x{L}",
        }[role]
        return onnx_sessions.trt_options(self.settings, self._only_inputs(role, shapes(1)),
                                         self._only_inputs(role, shapes(min(8, max_b))),
                                         self._only_inputs(role, shapes(max_b)))

    def _only_inputs(self, role: str, spec: str) -> str:
        """Profile entries for the inputs this file really has (unused ones would be refused)."""
        names = {"unet": ("sample", self.manifest.unet.time_input, *self.manifest.unet.cond_inputs)}.get(role)
        if names is None:
            return spec
        return ",".join(p for p in spec.split(",") if p.split(":")[0] in names)

    def _session(self, role: str, tiling: bool = False, overrides: tuple = ()) -> ort.InferenceSession:
        """The session of `role`; with `overrides` ((dim name, size), ...), one whose inputs are fixed."""
        key = (role, tiling, overrides)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                return session
            file = self._file(role, tiling)
            options = self._options()
            for name, size in overrides:
                options.add_free_dimension_override_by_name(name, size)
            session, seconds = onnx_sessions.open_session(self.version, file, options, self._provider_options(role))
            self._sessions[key] = session
            suffix = "" if not overrides else "@" + ",".join(f"{n}={v}" for n, v in overrides)
            self.load_seconds[file + suffix] = seconds
            return session

    def _fixed_shape_overrides(self, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> tuple:
        """Free-dimension values that fix every input of a small-batch CPU UNet call at the
        default size, or () to stay on the dynamic session (see STATIC_BATCHES)."""
        sample = feeds.get("sample")
        m = self.manifest
        if (self.execution_provider != prov.CPU or sample is None or sample.shape[0] not in STATIC_BATCHES
                or tuple(sample.shape[2:]) != (m.latent.height, m.latent.width)):
            return ()
        sizes: dict[str, int] = {}
        for node in session.get_inputs():
            value = feeds.get(node.name)
            if value is None or len(node.shape) != value.ndim:
                return ()
            for dim, size in zip(node.shape, value.shape, strict=True):
                if isinstance(dim, str) and sizes.setdefault(dim, size) != size:
                    return ()
        return tuple(sorted(sizes.items()))

    def _run(self, role: str, feeds: dict[str, np.ndarray], tiling: bool = False) -> np.ndarray:
        session = self._session(role, tiling)
        if role == "unet":
            overrides = self._fixed_shape_overrides(session, feeds)
            if overrides:
                session = self._session(role, tiling, overrides)
        names = {i.name for i in session.get_inputs()}
        return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]

    def warm_up(self) -> None:
        """One call per network at batch 1 (and the UNet at every STATIC_BATCHES size): first-run
        allocations, kernel choices and fixed-shape sessions happen here, not in a user's job."""
        start = time.perf_counter()
        cond = self.encode_text([""], [])
        if self.info.guidance_input:
            cond = {**cond, GUIDANCE_INPUT: np.full(1, self.info.default_guidance_scale, np.float32)}
        x = np.zeros((1, *self.info.latent_shape(self.info.width, self.info.height)), np.float32)
        x0 = self.denoise(x, np.ones(1), cond)
        for b in STATIC_BATCHES:
            if b != 1:
                self.denoise(np.repeat(x, b, 0), np.ones(b), {k: np.repeat(v, b, 0) for k, v in cond.items()})
        self.decode(x0)
        self.load_seconds["warm_up"] = time.perf_counter() - start

    # --- text

    def _encode_prompts(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token states and masks, each prompt computed once and then served from the LRU."""
        missing = []
        with self._lock:
            for p in dict.fromkeys(prompts):
                if p in self._text_cache:
                    self._text_cache.move_to_end(p)
                else:
                    missing.append(p)
        if missing:
            enc = self._tokenizer.encode_batch(missing)
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            states = self._run("text_encoder", {"input_ids": ids, "attention_mask": mask}).astype(np.float32)
            with self._lock:
                for i, p in enumerate(missing):
                    self._text_cache[p] = (states[i], mask[i].astype(np.float32))
                while len(self._text_cache) > self._text_cache_size:
                    self._text_cache.popitem(last=False)
        with self._lock:
            rows = [self._text_cache.get(p) for p in prompts]
        if any(r is None for r in rows):   # evicted between the two locks by a large batch
            return self._encode_uncached(prompts)
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def _encode_uncached(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self._tokenizer.encode_batch(list(prompts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        states = self._run("text_encoder", {"input_ids": ids, "attention_mask": mask}).astype(np.float32)
        return states, mask.astype(np.float32)

    def encode_text(self, prompts: Sequence[str], styles: Sequence[str] | None = None) -> Cond:
        """Conditioning rows for the UNet, one per prompt; `styles` by name ("" or none: style 0)."""
        cond: dict[str, np.ndarray] = {}
        inputs = self.manifest.unet.cond_inputs
        if self._tokenizer is not None:
            states, mask = self._encode_prompts(list(prompts))
        if "encoder_hidden_states" in inputs:
            cond["encoder_hidden_states"] = states
        if "encoder_attention_mask" in inputs:
            cond["encoder_attention_mask"] = mask
        if "style" in inputs:
            cond["style"] = self._style_ids(styles, len(prompts))
        return cond

    def _style_ids(self, styles: Sequence[str] | None, n: int) -> np.ndarray:
        names = list(self.manifest.styles)
        styles = list(styles or [])
        if len(styles) == 1 and n > 1:
            styles = styles * n
        if styles and len(styles) != n:
            raise ValueError(f"{len(styles)} styles for {n} prompts")
        ids = []
        for s in styles or [""] * n:
            if s in ("", None):
                ids.append(0)
            elif s in names:
                ids.append(names.index(s))
            else:
                raise ValueError(f"unknown style {s!r}; model {self.manifest.name} has {names}")
        return np.array(ids, dtype=np.int64)

    # --- denoising

    def _net(self, tiling: bool):
        time_name = self.manifest.unet.time_input

        def net(x_in: np.ndarray, t: np.ndarray, cond: Cond | None) -> np.ndarray:
            feeds = {"sample": np.ascontiguousarray(x_in, dtype=np.float32),
                     time_name: np.asarray(t, dtype=np.float32).reshape(-1)}
            feeds.update(cond or {})
            return self._run("unet", feeds, tiling)

        return net

    def denoiser(self, tiling: bool = False):
        """`denoise(x, sigma, cond) -> x0` (Contracts: denoiser), for x0 (EDM-wrapped), eps and v networks."""
        net = self._net(tiling)
        if self.manifest.unet.prediction == "x0" and self.manifest.unet.time_input == "sigma":
            def denoise(x: np.ndarray, sigma: np.ndarray, cond: Cond | None = None) -> np.ndarray:
                sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (x.shape[0],))
                return net(x, sigma, cond).astype(x.dtype, copy=False)

            return denoise
        return VPDenoiser(net, self._alphas_cumprod, prediction=self.manifest.unet.prediction)

    def denoise(self, x: np.ndarray, sigma: np.ndarray, cond: Cond | None = None) -> np.ndarray:
        return self.denoiser(False)(x, sigma, cond)

    def sigmas(self, steps: int) -> np.ndarray:
        m = self.manifest
        if m.schedule.kind == "edm":
            return karras_sigmas(steps, m.schedule.sigma_min, m.schedule.sigma_max, m.schedule.rho)
        return sampling_sigmas(m.defaults.schedule, steps, vp_sigmas(self._alphas_cumprod),
                               steps_offset=m.schedule.steps_offset)

    # --- pixels

    def decode(self, latents: np.ndarray, tiling: bool = False) -> np.ndarray:
        m = self.manifest
        z = np.asarray(latents, dtype=np.float32) / m.latent.scale + m.latent.shift
        image = self._run("vae_decoder", {"latent": z}, tiling)
        return _to_rgba8(image, m.image.value_range, m.image.premultiplied_alpha)

    def encode(self, images: np.ndarray) -> np.ndarray:
        m = self.manifest
        x = _from_rgba8(images, m.image.channels, m.image.value_range, m.image.premultiplied_alpha)
        mean = self._run("vae_encoder", {"image": x})
        return ((mean - m.latent.shift) * m.latent.scale).astype(np.float32)

    def preview(self, latents: np.ndarray) -> np.ndarray:
        """RGB uint8 at latent resolution by the export's linear fit (no decoder run)."""
        factors = np.asarray(self.manifest.latent.preview_rgb, dtype=np.float32)
        if factors.size == 0:
            return self.decode(latents)[..., :3]
        z = np.asarray(latents, dtype=np.float32)
        rgb = np.einsum("bchw,cr->bhwr", z, factors[:-1]) + factors[-1]
        lo, hi = self.manifest.image.value_range
        return np.clip((rgb - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _to_rgba8(image: np.ndarray, value_range: Sequence[float], premultiplied: bool) -> np.ndarray:
    lo, hi = value_range
    x = np.clip((np.transpose(image, (0, 2, 3, 1)) - lo) / (hi - lo), 0.0, 1.0)
    if x.shape[-1] == 3:
        x = np.concatenate([x, np.ones_like(x[..., :1])], axis=-1)
    elif premultiplied:
        a = x[..., 3:4]
        # Straight alpha out: colour = premultiplied colour / alpha where alpha is visible.
        x = np.concatenate([np.where(a > 0.5 / 255, np.clip(x[..., :3] / np.maximum(a, 1e-6), 0, 1), 0.0), a], -1)
    return (x * 255.0 + 0.5).astype(np.uint8)


def _from_rgba8(images: np.ndarray, channels: int, value_range: Sequence[float], premultiplied: bool) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32) / 255.0
    if x.shape[-1] == 3:
        x = np.concatenate([x, np.ones_like(x[..., :1])], axis=-1)
    if channels == 4 and premultiplied:
        x = np.concatenate([x[..., :3] * x[..., 3:4], x[..., 3:4]], axis=-1)
    x = x[..., :channels]
    lo, hi = value_range
    return np.ascontiguousarray(np.transpose(x * (hi - lo) + lo, (0, 3, 1, 2)), dtype=np.float32)


def load_runtime(settings: Settings, model: str, version: str | None = None,
                 **kwargs: Any) -> OnnxModelRuntime | OnnxUpscalerRuntime:
    """The `Settings.runtime_loader` entry point: a hash-checked version on the best providers;
    an upscaler version (its manifest has an `upscaler` section) gets the upscaler's runtime."""
    repo = ModelRepository(settings.model_repository)
    opened = repo.open(model, version or None)  # '' and None both mean the newest version
    opened.verify()
    if opened.manifest.upscaler is not None:
        return OnnxUpscalerRuntime(opened, settings, **kwargs)
    return OnnxModelRuntime(opened, settings, **kwargs)
