"""Super-resolution through the real stack: the SDK and the CLI -> the gRPC gateway -> Redis -> a
real Celery worker process -> ONNX Runtime, with the shipped text-to-image model and a tiny random
x4 upscaler exported by `atelier export` (bench/tiny_models.py; the shipped upscaler's images are
judged in its EVAL.md, this test judges the serving).

The cascade (`upscale=4`) makes a 128x128 image in one job, its progress counting both stages,
its previews coming from both, its provenance naming both models and both step counts; an UPSCALE
job upscales an upload (PNG or JPEG, RGBA or RGB) x4; replaying either provenance gives the same
bytes; a bomb or a broken upload is INVALID_ARGUMENT at Submit, never a job."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier_cli.main import main as cli_main
from atelier_cli.up import EmbeddedStack
from clients import Client, InvalidArgument
from services.common.settings import Settings
from tests.clients.deadlines import call_within, within
from tests.clients.real_stack import EMOJI_JOB, JOB_SECONDS, READY_SECONDS, SHIPPED_MODELS, newest_version, pixels
from tests.gateway.test_validation import png_claiming, truncated_png
from tests.redis_harness import redis_server

pytestmark = [pytest.mark.slow, pytest.mark.redis]

UPSCALER = "tiny-upscale"
BASE_STEPS, SR_STEPS = EMOJI_JOB["steps"], 2


@pytest.fixture(scope="module")
def sr_stack(tmp_path_factory):
    """`atelier up`'s stack over a repository of the shipped default model and the tiny upscaler."""
    from bench.tiny_models import tiny_upscaler_repository

    root = tmp_path_factory.mktemp("sr-stack")
    models = tiny_upscaler_repository(root)
    settings = Settings.from_env({}, model_repository=models, grpc_listen="127.0.0.1:0", gateway_metrics_port=0,
                                 worker_metrics_port=0, default_upscaler=UPSCALER)
    # The shipped model as it is, by a link to its folder (the reader refuses links only inside a version).
    (models / settings.default_model).symlink_to(SHIPPED_MODELS / settings.default_model, target_is_directory=True)
    with redis_server() as server, \
            EmbeddedStack(settings, state_dir=root / "state", redis_url=server.url, worker_concurrency=2,
                          ready_timeout=READY_SECONDS) as stack:
        yield stack, models, settings


def events_of(client: Client, **request) -> list:
    return within(client.generate(**request), JOB_SECONDS)


def artifact_of(events) -> object:
    (artifact,) = [e.artifact for e in events if e.HasField("artifact")]
    assert events[-1].finished.state == 3, events[-1].finished.error_message  # SUCCEEDED
    return artifact


def manifest_sha256(models: Path, name: str, version: str) -> str:
    return hashlib.sha256((models / name / version / "manifest.json").read_bytes()).hexdigest()


def replayed(client: Client, p, **uploads) -> bytes:
    """The image a client gets back for a request made field by field from provenance `p`."""
    request = dict(prompt=p.prompt, negative_prompt=p.negative_prompt, style=p.style, model=p.model_name,
                   model_version=p.model_version, sampler=p.sampler or None, steps=p.steps, seeds=[p.seed],
                   width=p.width, height=p.height, upscale=p.upscale, upscale_steps=p.upscale_steps,
                   upscaler=p.upscaler_name, upscaler_version=p.upscaler_version, upscale_fast=p.upscale_fast,
                   **uploads)
    if p.model_name:
        request["guidance_scale"] = p.guidance_scale
    return artifact_of(events_of(client, **request)).data


def test_a_cascade_makes_128_pixel_images_in_one_job_and_its_provenance_remakes_them(sr_stack):
    stack, models, settings = sr_stack
    base_version = newest_version(settings.default_model)
    with Client(stack.address, stack.api_key, timeout=30) as c:
        events = events_of(c, **EMOJI_JOB, seeds=[7], upscale=4, upscale_steps=SR_STEPS, preview_every_steps=1)
        art = artifact_of(events)
        image = Image.open(io.BytesIO(art.data))
        assert (image.format, image.mode, image.size, art.width, art.height) == ("PNG", "RGBA", (128, 128), 128, 128)
        p = art.provenance
        assert (p.model_name, p.model_version, p.steps, p.steps_run) == (settings.default_model, base_version,
                                                                         BASE_STEPS, BASE_STEPS)
        assert p.model_sha256 == manifest_sha256(models, settings.default_model, base_version)
        assert (p.upscale, p.upscaler_name, p.upscaler_version, p.upscale_steps, p.upscale_fast) == (
            4, UPSCALER, "1", SR_STEPS, False)
        assert p.upscaler_sha256 == manifest_sha256(models, UPSCALER, "1")
        assert (p.width, p.height) == (32, 32)  # the base image; the artifact is 4 times larger

        # Progress counts both stages; previews come from the base sampler's steps and the upscaler's.
        progress = [e.progress for e in events if e.HasField("progress")]
        assert {q.total_steps for q in progress} == {BASE_STEPS + SR_STEPS}
        assert progress[-1].step == BASE_STEPS + SR_STEPS
        shown = {e.preview.step for e in events if e.HasField("preview")}
        assert shown & set(range(1, BASE_STEPS)) and BASE_STEPS + 1 in shown, shown
        job = c.get(events[0].job_id)
        assert (job.steps_done, job.steps_total, job.model) == (BASE_STEPS + SR_STEPS, BASE_STEPS + SR_STEPS,
                                                                 settings.default_model)
        handle = c.submit(**EMOJI_JOB, seeds=[8], upscale=4)
        assert handle.eta.ToNanoseconds() > 0
        np.testing.assert_array_equal(pixels(replayed(c, p)), pixels(art.data))


def test_an_upscale_job_upscales_an_upload_and_its_provenance_remakes_it(sr_stack):
    stack, models, _ = sr_stack
    with Client(stack.address, stack.api_key, timeout=30) as c:
        sprite = artifact_of(events_of(c, **EMOJI_JOB, seeds=[3])).data  # a studio's own 32x32 RGBA image
        events = events_of(c, upscale_image=sprite, seeds=[5], upscale_steps=SR_STEPS, preview_every_steps=1)
        art = artifact_of(events)
        assert Image.open(io.BytesIO(art.data)).size == (128, 128)
        p = art.provenance
        assert (p.model_name, p.model_sha256, p.steps, p.upscaler_name, p.upscale_steps) == ("", "", 0, UPSCALER,
                                                                                              SR_STEPS)
        assert p.upscale_image_sha256 == hashlib.sha256(sprite).hexdigest() and (p.width, p.height) == (32, 32)
        assert {e.progress.total_steps for e in events if e.HasField("progress")} == {SR_STEPS}
        assert [e.preview.step for e in events if e.HasField("preview")] == [1]
        job = c.get(events[0].job_id)
        assert (job.model, job.model_version, job.steps_total) == (UPSCALER, "1", SR_STEPS)
        np.testing.assert_array_equal(pixels(replayed(c, p, upscale_image=sprite)), pixels(art.data))

        # Any size and an RGB JPEG: 20x12 becomes 80x48; the one-pass network too.
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(buf, "JPEG")
        for fast in (False, True):
            art = artifact_of(events_of(c, upscale_image=buf.getvalue(), seeds=[1], upscale_fast=fast))
            assert (art.width, art.height, art.provenance.upscale_fast) == (80, 48, fast)


@pytest.mark.parametrize("upload", [png_claiming(100_000, 100_000), truncated_png(), b"not an image at all"],
                         ids=["bomb", "truncated", "not an image"])
def test_an_unusable_upload_is_refused_at_submit(sr_stack, upload):
    stack, _, _ = sr_stack
    with Client(stack.address, stack.api_key, timeout=30) as c:
        with pytest.raises(InvalidArgument) as err:
            c.submit(upscale_image=upload)
    assert [v.field for v in err.value.violations] == ["upscale_image.data"]


def test_the_cli_upscales_a_file_and_generates_through_the_cascade(sr_stack, tmp_path, capsys, monkeypatch):
    stack, _, _ = sr_stack
    monkeypatch.setenv("ATELIER_GATEWAY", stack.address)
    monkeypatch.setenv("ATELIER_API_KEY", stack.api_key)
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    Image.new("RGBA", (24, 16), (200, 40, 40, 255)).save(buf, "PNG")
    Path("in.png").write_bytes(buf.getvalue())
    argv = ["upscale", "in.png", "--out", "out.png", "--seed", "3", "--steps", "2", "--no-progress"]
    assert call_within(lambda: cli_main(argv), JOB_SECONDS) == 0, capsys.readouterr().err
    assert Image.open("out.png").size == (96, 64)
    argv = ["generate", EMOJI_JOB["prompt"], "--style", EMOJI_JOB["style"], "--sampler", EMOJI_JOB["sampler"],
            "--steps", str(BASE_STEPS), "--seed", "7", "--upscale", "4", "--out", "pics", "--no-progress"]
    assert call_within(lambda: cli_main(argv), JOB_SECONDS) == 0, capsys.readouterr().err
    (path,) = capsys.readouterr().out.split()[-1:]
    assert Image.open(os.fspath(path)).size == (128, 128)
