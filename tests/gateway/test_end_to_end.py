"""The whole path: SDK -> gRPC gateway -> Redis -> a real Celery worker process (numpy toy model)."""

import hashlib
import io
import threading

import numpy as np
import pytest
from PIL import Image

from atelier.v1 import types_pb2
from clients import Client
from services.common.manifest import Defaults, FileEntry, ImageSpec, LatentSpec, Manifest, UNetSpec
from services.gateway.server import serve
from tests.gateway.conftest import gateway_settings
from tests.services.test_worker_integration import PREFIX, Workers

# The SDK's event streams have no deadline of their own: each test gets one.
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(120, func_only=True)]


def write_toy_model(root):
    """A repository entry matching tests/services/toy_runtime.py's "toy/1"."""
    folder = root / "toy" / "1"
    folder.mkdir(parents=True)
    blob = b"toy encoder"
    (folder / "vae_encoder.onnx").write_bytes(blob)
    manifest = Manifest(
        name="toy", version="1", styles=("flat", "pixel"),
        image=ImageSpec(width=16, height=16), latent=LatentSpec(factor=4, width=4, height=4),
        unet=UNetSpec(padding_modes=("zeros", "circular")),
        defaults=Defaults(sampler="euler", steps=6, guidance_scale=2.0),
        components={"vae_encoder": "vae_encoder.onnx"},
        files={"vae_encoder.onnx": FileEntry(hashlib.sha256(blob).hexdigest(), len(blob), role="vae_encoder")},
    )
    (folder / "manifest.json").write_text(manifest.to_json())
    return root


@pytest.fixture
def live(redis_url, keys, tmp_path):
    workers = Workers(redis_url, tmp_path)
    settings = gateway_settings(
        redis_url, keys, write_toy_model(tmp_path / "repo"), key_prefix=PREFIX, default_model="toy",
        gateway_threads=64, visibility_timeout=6, task_time_limit=5, task_soft_time_limit=4,
    )
    gateway = serve(settings, health_interval=0.2)
    try:
        workers.start(concurrency=2, call_seconds=0.02)
        yield gateway, keys
    finally:
        gateway.stop(grace=0)
        workers.stop_all()


def test_generate_submit_watch_resume_and_cancel_through_a_real_worker(live):
    gateway, keys = live
    with Client(gateway.address, keys.alice) as c:
        assert c.health() == "SERVING"
        # Generate: a PNG and a raw RGBA image, with provenance.
        events = list(c.generate("a blue gem", style="flat", seeds=[3], preview_every_steps=2))
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "finished", kinds
        assert "progress" in kinds and "preview" in kinds
        (art,) = [e.artifact for e in events if e.HasField("artifact")]
        assert art.mime_type == "image/png" and Image.open(io.BytesIO(art.data)).size == (16, 16)
        assert art.provenance.seed == 3 and art.provenance.model_name == "toy"
        assert art.provenance.sampler == types_pb2.SAMPLER_EULER and art.provenance.steps == 6

        raw = [e.artifact for e in c.generate("a blue gem", style="flat", seeds=[3], output_format="raw")
               if e.HasField("artifact")][0]
        assert raw.mime_type == "application/x-atelier-rgba8" and len(raw.data) == 16 * 16 * 4
        pixels = np.frombuffer(raw.data, np.uint8).reshape(16, 16, 4)
        png = np.asarray(Image.open(io.BytesIO(art.data)).convert("RGBA"))
        assert np.abs(pixels.astype(int) - png.astype(int)).max() <= 1  # same seed, same image

        # Submit, then Watch dropped after three events and resumed from the last id.
        handle = c.submit("a red gem", style="pixel", seeds=[1, 2], steps=20)
        first = []
        for event in c.watch(handle.job_id):
            first.append(event)
            if len(first) == 3:
                break
        rest = list(c.watch(handle.job_id, first[-1].id))
        full = list(c.watch(handle.job_id))
        assert [e.id for e in first + rest] == [e.id for e in full]
        assert full[-1].finished.state == types_pb2.JOB_STATE_SUCCEEDED and full[-1].finished.images == 2

        # Cancel mid-run.
        slow = c.submit("a green gem", seeds=[5], steps=150)
        stream = c.watch(slow.job_id)
        for event in stream:
            if event.HasField("progress"):
                break
        cancelled = c.cancel(slow.job_id)
        assert cancelled.cancelled
        tail = list(stream)
        assert tail[-1].finished.state == types_pb2.JOB_STATE_CANCELLED


def test_fifty_concurrent_generate_streams(live):
    gateway, keys = live
    results, errors = [], []

    def one(i):
        try:
            with Client(gateway.address, keys.alice) as c:
                events = list(c.generate("a gem", seeds=[i], steps=2))
                results.append(events[-1].finished.state)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and results == [types_pb2.JOB_STATE_SUCCEEDED] * 50
