"""A small, real model runtime in numpy: the test data of the worker tests.

Latents are 4 x (H/4) x (W/4). The "data" is Gaussian with a mean set by the prompt and
style, so its ideal denoiser has a closed form (posterior mean, diagonal covariance):
D(x, sigma) = mu + lam / (lam + sigma^2) (x - mu). Every pixel is independent, so every
image tiles seamlessly and batching cannot change a single bit. The "VAE" is a fixed
pointwise map from a latent cell to a 4x4 block of RGBA pixels, and its inverse.

A prompt containing "nan" conditions on NaN (to test numerical failure handling);
`ATELIER_TOY_CALL_SECONDS` makes every denoiser call sleep (to catch jobs mid-run);
`ATELIER_TOY_PIXEL_SECONDS` adds that many seconds per latent pixel of every row, the cost
of a UNet on an accelerator the worker waits for (its time grows with the image, not with
this machine's CPU load: the ETA tests measure the estimate, not the neighbours);
`ATELIER_TOY_CALL_LOG` names a file to which every denoiser call appends its start time and
row count (to count, from outside a worker process, the calls made after a job was stopped).

:class:`ToyUpscaler` ("toy-upscale") is the x4 upscaler of the same kind: the residual it
predicts is a fixed function of the upsampled input, so its ideal x0 has the same closed form,
and its one-pass network returns that function itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import threading
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from diffusion.schedules import karras_sigmas
from services.common.jobs import JobRecord, JobSpec
from services.common.plan import resolve
from services.worker.pipeline import generate
from services.worker.runtime import ModelInfo, UpscalerInfo, linear_preview

LAM = 0.25
FACTOR = 4
SIGMA_MIN, SIGMA_MAX = 0.02, 10.0
SHA256 = "ab" * 32
MIX = np.array(
    [[0.9, 0.2, -0.3, 0.0], [-0.2, 0.8, 0.3, 0.0], [0.3, -0.4, 0.7, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float64
)


def _text_vector(prompt: str, style: str) -> np.ndarray:
    if "nan" in prompt:
        return np.full(4, np.nan, dtype=np.float32)
    digest = hashlib.blake2b(f"{prompt}\x00{style}".encode(), digest_size=8).digest()
    rng = np.random.Generator(np.random.Philox(int.from_bytes(digest, "little")))
    return (rng.standard_normal(4) * 0.8).astype(np.float32)


class ToyRuntime:
    execution_provider = "CPUExecutionProvider"

    def __init__(self, name: str = "toy", version: str = "1", sha256: str = SHA256):
        self.info = ModelInfo(
            name=name,
            version=version,
            sha256=sha256,
            width=16,
            height=16,
            latent_channels=4,
            latent_factor=FACTOR,
            styles=("flat", "pixel"),
            default_sampler="euler",
            default_steps=6,
            default_guidance_scale=2.0,
            supports_tiling=True,
            dynamic_size=True,
            schedule={"kind": "edm", "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "rho": 7.0, "spacing": "karras"},
        )
        self.call_seconds = float(os.environ.get("ATELIER_TOY_CALL_SECONDS", "0"))
        self.pixel_seconds = float(os.environ.get("ATELIER_TOY_PIXEL_SECONDS", "0"))
        self.call_log = os.environ.get("ATELIER_TOY_CALL_LOG", "")
        self.calls = 0

    def encode_text(self, prompts: Sequence[str], styles: Sequence[str]):
        text = np.stack([_text_vector(p, s) for p, s in zip(prompts, styles, strict=True)])
        return {"text": text}

    def _denoise(self, x: np.ndarray, sigma: np.ndarray, cond) -> np.ndarray:
        self.calls += 1
        if self.call_log:
            with open(self.call_log, "a") as log:
                log.write(f"{time.time()!r} {x.shape[0]}\n")
        if self.info.name == "toy-hang":
            threading.Event().wait()  # a call that never returns: a hung kernel, a deadlocked runtime
        if self.call_seconds or self.pixel_seconds:
            time.sleep(self.call_seconds + self.pixel_seconds * x.shape[0] * x.shape[-2] * x.shape[-1])
        h, w = x.shape[-2:]
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        pattern = np.cos(2 * np.pi * (yy / h + 2 * xx / w))  # periodic: tiles seamlessly
        mu = cond["text"][:, :, None, None].astype(np.float64) * (0.5 + 0.5 * pattern)
        s2 = np.asarray(sigma, dtype=np.float64).reshape(-1, 1, 1, 1) ** 2
        return (mu + LAM / (LAM + s2) * (x - mu)).astype(x.dtype)

    def denoiser(self, tiling: bool = False):
        return self._denoise

    def sigmas(self, steps: int) -> np.ndarray:
        return karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)

    def decode(self, latents: np.ndarray, tiling: bool = False) -> np.ndarray:
        z = np.einsum("bchw,dc->bhwd", np.asarray(latents, dtype=np.float64), MIX)
        pixels = np.clip(np.rint((np.tanh(z) + 1.0) * 127.5), 0, 255).astype(np.uint8)
        return pixels.repeat(FACTOR, axis=1).repeat(FACTOR, axis=2)

    def encode(self, images: np.ndarray) -> np.ndarray:
        b, hh, ww, _ = images.shape
        cells = images.astype(np.float64).reshape(b, hh // FACTOR, FACTOR, ww // FACTOR, FACTOR, 4).mean(axis=(2, 4))
        z = np.arctanh(np.clip(cells / 127.5 - 1.0, -0.999, 0.999))
        return np.einsum("bhwd,cd->bchw", z, np.linalg.inv(MIX)).astype(np.float32)

    def preview(self, latents: np.ndarray) -> np.ndarray:
        return linear_preview(latents, MIX[:3].T.astype(np.float32))


UPSCALER_SHA256 = "cd" * 32


class ToyUpscaler:
    """A x4 upscaler in numpy: the residual over the upsampled input is mu = 0.2 tanh(3 low_res),
    with Gaussian spread LAM around it; x0 is its posterior mean, as the toy model's."""

    execution_provider = "CPUExecutionProvider"

    def __init__(self, name: str = "toy-upscale", version: str = "1", sha256: str = UPSCALER_SHA256):
        self.info = UpscalerInfo(
            name=name, version=version, sha256=sha256, factor=4, default_steps=3, sigma_min=0.02,
            sigma_max=2.0, rho=7.0, aug_level=0.05, size_multiple=8, tile=8, tile_overlap=2,
            max_input_side=64, fast=True,
        )
        self.calls = 0
        self.call_seconds = float(os.environ.get("ATELIER_TOY_CALL_SECONDS", "0"))

    def _mu(self, low_res: np.ndarray) -> np.ndarray:
        return 0.2 * np.tanh(3.0 * low_res.astype(np.float64))

    def denoise(self, x, sigma, low_res, aug) -> np.ndarray:
        self.calls += 1
        if self.call_seconds:
            time.sleep(self.call_seconds)
        mu = self._mu(low_res)
        s2 = np.asarray(sigma, dtype=np.float64).reshape(-1, 1, 1, 1) ** 2
        return (mu + LAM / (LAM + s2) * (x - mu)).astype(np.float32)

    def fast(self, low_res) -> np.ndarray:
        return self._mu(low_res).astype(np.float32)

    def denoiser(self, tiling: bool = False):
        if tiling:  # as the real one (services/worker/upscaler_runtime.py): it tiles inputs itself
            raise ValueError("the upscaler has no circular-padding networks: it tiles large inputs itself")
        return lambda x, sigma, cond: self.denoise(x, sigma, cond["low_res"], cond["aug_level"])


def _sha256_in(settings, model: str, version: str, default: str) -> str:
    manifest = settings.model_repository / model / version / "manifest.json" if settings else None
    return hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest and manifest.is_file() else default


def load(settings, model: str, version: str) -> ToyRuntime | ToyUpscaler:
    """The toy as `model`/`version`; where the settings' repository has that entry (a gateway
    plans jobs against it), the toy stands for it: it reports its manifest's sha256."""
    version = version or "1"
    if model == "toy-upscale":
        return ToyUpscaler(model, version, _sha256_in(settings, model, version, UPSCALER_SHA256))
    if model not in ("toy", "toy-slow", "toy-hang"):
        raise LookupError(f"no model named {model!r}")
    return ToyRuntime(model, version, _sha256_in(settings, model, version, SHA256))


def input_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def planned(spec: JobSpec, name: str = "toy", version: str = "1") -> JobSpec:
    """``spec`` as the gateway stores it for the toy models: pinned, with its plan (an UPSCALE job
    and a cascade on the toy upscaler)."""
    upscaler = None
    if spec.upscale_image is not None or spec.upscale > 1:
        spec = spec.with_(upscaler=spec.upscaler or "toy-upscale", upscaler_version=spec.upscaler_version or "1")
        upscaler = ToyUpscaler(spec.upscaler, spec.upscaler_version).info
    if spec.upscale_image is not None:
        return spec.with_(plan=resolve(spec, None, upscaler, input_size(spec.upscale_image)))
    pinned = spec.with_(model=spec.model or name, model_version=spec.model_version or version)
    return pinned.with_(plan=resolve(pinned, ToyRuntime(pinned.model, pinned.model_version).info, upscaler))


class ArtifactCollector:
    """A job reporter that keeps every artifact and never stops the job."""

    def __init__(self):
        self.artifacts: list[tuple[dict, bytes]] = []

    def check(self): ...
    def progress(self, *args): ...
    def preview(self, *args): ...

    def artifact(self, payload, blob):
        self.artifacts.append((dataclasses.asdict(payload), blob))  # the payload as its stream JSON holds it


def made_alone(spec, rows_per_chunk: int = 8) -> list[tuple[dict, bytes]]:
    """(artifact data, image bytes) of every image of `spec`, made by the bare pipeline on this model."""
    runtime = ToyRuntime()
    reporter = ArtifactCollector()
    generate(JobRecord("alone", "acme", planned(spec)), runtime, lambda tiling, shape: runtime.denoiser(tiling),
             reporter, rows_per_chunk=rows_per_chunk)
    return reporter.artifacts
