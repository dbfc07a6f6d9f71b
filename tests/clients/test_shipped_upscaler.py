"""The shipped upscaler (models/atelier-upscale, when the repository has a version) through the real
stack: SDK -> gRPC gateway -> Redis -> a Celery worker process -> ONNX Runtime, behind the shipped
text-to-image model. test_upscale_end_to_end.py judges the serving on a tiny random upscaler; this
test checks that the trained one is what a cascade runs by default and that its 128² image keeps
the 32² image it enlarges (the round trip of its EVAL.md, on a served image)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from atelier_cli.up import EmbeddedStack
from clients import Client
from diffusion.evaluation.image_quality import rgba_psnr
from diffusion.evaluation.upscale_eval import low_resolution
from repository.reader import ModelRepository
from services.common.settings import Settings
from tests.clients.deadlines import within
from tests.clients.real_stack import EMOJI_JOB, JOB_SECONDS, READY_SECONDS, SHIPPED_MODELS
from tests.redis_harness import redis_server

UPSCALER = "atelier-upscale"
pytestmark = [pytest.mark.slow, pytest.mark.redis,
              pytest.mark.skipif(not ModelRepository(SHIPPED_MODELS).versions(UPSCALER),
                                 reason="no shipped upscaler in models/")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`atelier up`'s stack over the shipped models, as the demo runs it."""
    settings = Settings.from_env({}, model_repository=SHIPPED_MODELS, grpc_listen="127.0.0.1:0",
                                 gateway_metrics_port=0, worker_metrics_port=0, default_upscaler=UPSCALER)
    with redis_server() as server, \
            EmbeddedStack(settings, state_dir=tmp_path_factory.mktemp("shipped-sr"), redis_url=server.url,
                          worker_concurrency=2, ready_timeout=READY_SECONDS) as s:
        yield s


def _artifact(client: Client, **request):
    events = within(client.generate(**request), JOB_SECONDS)
    (artifact,) = [e.artifact for e in events if e.HasField("artifact")]
    assert events[-1].finished.state == 3, events[-1].finished.error_message  # SUCCEEDED
    return artifact


def _premultiplied(png: bytes) -> np.ndarray:
    """A served PNG (straight alpha) as uint8 premultiplied RGBA [1, H, W, 4], as the evaluation holds images."""
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.float64)
    rgba[..., :3] = np.rint(rgba[..., :3] * rgba[..., 3:] / 255.0)
    return rgba.astype(np.uint8)[None]


def test_a_cascade_runs_the_shipped_upscaler_at_its_defaults_and_keeps_the_base_image(stack):
    repo = ModelRepository(SHIPPED_MODELS)
    version = repo.latest(UPSCALER)
    spec = repo.manifest(UPSCALER, version).upscaler
    with Client(stack.address, stack.api_key, timeout=30) as c:
        base = _artifact(c, **EMOJI_JOB, seeds=[7])
        big = _artifact(c, **EMOJI_JOB, seeds=[7], upscale=4)
        fast = _artifact(c, **EMOJI_JOB, seeds=[7], upscale=4, upscale_fast=True)
    p = big.provenance
    assert (big.width, big.height, p.upscaler_name, p.upscaler_version) == (128, 128, UPSCALER, version)
    assert (p.upscale_steps, p.upscale_fast) == (spec.default_steps, False)
    assert (fast.width, fast.height, fast.provenance.upscale_fast) == (128, 128, True)
    small = _premultiplied(base.data)
    for art in (big, fast):
        # Box-downsampled back to 32², the 128² image is the 32² one again (EVAL.md: 39.5 dB on
        # held-out images; a served PNG adds the rounding of straight alpha).
        assert rgba_psnr(low_resolution(_premultiplied(art.data), 4), small)[0] > 30.0
    # And it is not the nearest-neighbour enlargement: the upscaler drew new pixels.
    nearest = small.repeat(4, axis=1).repeat(4, axis=2)
    assert rgba_psnr(_premultiplied(big.data), nearest)[0] < 40.0
