"""The whole path: SDK -> gRPC gateway -> Redis -> a real Celery worker process (numpy toy model)."""

import hashlib
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import types_pb2
from clients import Client
from repository.manifest import Defaults, FileEntry, ImageSpec, LatentSpec, Manifest, UNetSpec
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
        # The workers' toy stands for the repository's entry the gateway plans against.
        workers.start(concurrency=2, call_seconds=0.02, model_repository=str(tmp_path / "repo"))
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
        in_file = Image.open(io.BytesIO(art.data)).text  # the metadata stage's text chunks
        assert json.loads(in_file["provenance"])["model_sha256"] == art.provenance.model_sha256
        assert in_file["parameters"].startswith("a blue gem\nSteps: 6, Sampler: Euler, CFG scale: 2.0, Seed: 3,")

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


def replay_request(p: types_pb2.Provenance, init: bytes | None, mask: bytes | None) -> gen.GenerateRequest:
    """The request a client builds from an artifact's provenance and the images it sent."""
    return with_uploads(gen.GenerateRequest(
        prompt=p.prompt, negative_prompt=p.negative_prompt, style=p.style, model=p.model_name,
        model_version=p.model_version, sampler=p.sampler, steps=p.steps, guidance_scale=p.guidance_scale,
        guidance_rescale=p.guidance_rescale, eta=p.eta, width=p.width, height=p.height, tiling=p.tiling,
        strength=p.strength, seeds=[p.seed], output_format=types_pb2.OUTPUT_FORMAT_RAW_RGBA8,
    ), init, mask)


def with_uploads(req: gen.GenerateRequest, init: bytes | None, mask: bytes | None) -> gen.GenerateRequest:
    if init:
        req.init_image.data = init
    if mask:
        req.mask.data = mask
    return req


def the_artifact(events) -> gen.Artifact:
    (art,) = [e.artifact for e in events if e.HasField("artifact")]
    return art


def test_an_artifact_s_provenance_sent_back_through_the_gateway_remakes_it(live):
    gateway, keys = live
    init, mask = io.BytesIO(), io.BytesIO()
    Image.new("RGBA", (16, 16), (200, 40, 40, 255)).save(init, "PNG")
    Image.new("L", (16, 16), 255).crop((0, 0, 8, 16)).resize((16, 16)).save(mask, "PNG")
    kinds = {"txt2img": {}, "img2img": {"strength": 0.5}, "inpaint": {"strength": 0.75}}
    with Client(gateway.address, keys.alice) as c:
        for kind, changes in kinds.items():
            uploads = {"init_image": init.getvalue() if kind != "txt2img" else None,
                       "mask": mask.getvalue() if kind == "inpaint" else None}
            asked = gen.GenerateRequest(prompt="a blue gem", negative_prompt="dull", style="flat", seeds=[7],
                                        sampler=types_pb2.SAMPLER_EULER_ANCESTRAL,
                                        output_format=types_pb2.OUTPUT_FORMAT_RAW_RGBA8, **changes)
            first = the_artifact(c.generate(request=with_uploads(asked, uploads["init_image"], uploads["mask"])))
            assert first.provenance.eta == 1.0 and first.provenance.steps == 6, kind  # the model's defaults
            assert first.provenance.steps_run == {"img2img": 3, "inpaint": 4}.get(kind, 6), kind
            again = the_artifact(c.generate(request=replay_request(first.provenance, *uploads.values())))
            assert again.provenance == first.provenance, kind
            assert again.data == first.data, kind
