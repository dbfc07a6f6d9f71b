"""The real stack for the clients' end-to-end tests: the SHIPPED model, not a stand-in.

`real_stack` (session-scoped, so the model loads once) is `atelier up`'s `EmbeddedStack`: a
real Celery worker process (`atelier worker`, ONNX Runtime) serving the newest shipped version
of the default model from the repository's own `models/` folder, and the real gRPC gateway on
loopback, on a Redis database of its own (the tests' Redis server, see tests/redis_harness.py).
The SDK, the CLI and the Node.js client each run one job through it and check the image the
model drew (`assert_emoji`), its seed and its provenance.

Every wait has a deadline: the stack must be ready within `READY_SECONDS`, a job's stream must
end within `JOB_SECONDS`, so a broken worker fails a test in seconds instead of hanging it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier_cli.up import EmbeddedStack
from repository.manifest import Manifest
from repository.reader import ModelRepository
from services.common.settings import Settings
from tests.redis_harness import redis_server

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODELS = ROOT / "models"
READY_SECONDS = 120.0  # load, hash-check and warm up the model on a loaded 2-core machine
JOB_SECONDS = 30.0  # a fast job takes under 5 s on a loaded 2-core machine, the first one included

# A fast job the shipped model still draws well: on atelier-emoji/2, Euler at 10 steps gives a
# clean emoji on a transparent background where UniPC at 3-6 steps gives coloured noise.
EMOJI_JOB = dict(prompt="a grinning cat face", style="twemoji", sampler="euler", steps=10)


@dataclass(frozen=True)
class RealStack:
    address: str
    api_key: str
    model: str  # name
    version: str  # the newest shipped version, which the worker serves
    model_sha256: str  # of its manifest.json: the model's identity in provenance
    manifest: Manifest
    http_address: str  # the HTTP/JSON API and playground of the same gateway
    keys_file: Path  # the gateway's API keys (it reloads them on change): add another tenant's here
    signing_ca: Path  # the CA of the development chain that signs the images' content credentials


@pytest.fixture(scope="session")
def real_stack(tmp_path_factory) -> RealStack:
    """A real worker process serving the newest shipped model, behind the real gateway."""
    settings = Settings.from_env({}, model_repository=SHIPPED_MODELS, grpc_listen="127.0.0.1:0",
                                 http_listen="127.0.0.1:0", gateway_metrics_port=0, worker_metrics_port=0)
    shipped = ModelRepository(SHIPPED_MODELS).open(settings.default_model, newest_version(settings.default_model))
    with redis_server() as server, \
            EmbeddedStack(settings, state_dir=tmp_path_factory.mktemp("real-stack"), redis_url=server.url,
                          worker_concurrency=2, ready_timeout=READY_SECONDS) as stack:
        yield RealStack(stack.address, stack.api_key, shipped.name, shipped.version, shipped.manifest_sha256,
                        shipped.manifest, stack.gateway.http_address, stack.settings.api_keys_file,
                        stack.signing_dir / "signing-ca.pem")


def newest_version(model: str) -> str:
    """The highest numbered version folder of `model` in models/, counted here rather than asked of
    the repository reader the worker uses, so a worker serving an older version is caught."""
    folders = (SHIPPED_MODELS / model).iterdir()
    return max((p.name for p in folders if p.name.isdigit() and (p / "manifest.json").is_file()), key=int)


def assert_emoji(data: bytes, manifest: Manifest) -> np.ndarray:
    """`data` is a PNG the model drew: its native size, RGBA, and an emoji's alpha, an opaque
    subject on a transparent background (neither all opaque nor all transparent). Returns the pixels."""
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (manifest.image.width, manifest.image.height)
    assert image.mode == "RGBA"
    alpha = np.asarray(image)[..., 3].astype(float)
    transparent, opaque = (alpha < 16).mean(), (alpha > 240).mean()
    assert 0.03 < transparent < 0.6, f"{transparent:.0%} of the pixels are transparent"
    assert 0.2 < opaque < 0.97, f"{opaque:.0%} of the pixels are opaque"
    h, w = alpha.shape
    centre = alpha[h // 4: -h // 4, w // 4: -w // 4].mean()
    rim = np.concatenate([alpha[:2].ravel(), alpha[-2:].ravel(), alpha[:, :2].ravel(), alpha[:, -2:].ravel()]).mean()
    assert centre > rim + 60, f"the subject is not in the middle: alpha {centre:.0f} inside, {rim:.0f} at the rim"
    return np.asarray(image)


def pixels(data: bytes) -> np.ndarray:
    """An image file's pixels: what "the same image" means, since each delivered file carries a
    C2PA manifest of its own (a fresh signature and instance id), so two deliveries' bytes differ."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def assert_different_images(a: bytes, b: bytes) -> None:
    """Two seeds' images differ as pictures, not by a few rounding bits."""
    pa, pb = (np.asarray(Image.open(io.BytesIO(x)), dtype=float) for x in (a, b))
    assert np.abs(pa - pb).mean() > 5.0
