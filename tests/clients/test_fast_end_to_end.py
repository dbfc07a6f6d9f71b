"""Fast mode through the real stack: the SDK and the CLI -> the gRPC gateway -> Redis -> a real
Celery worker process -> ONNX Runtime, with the shipped consistency-distilled model
(models/atelier-emoji-fast), the shipped teacher beside it, and a tiny random x4 upscaler
exported by `atelier export` (bench/tiny_models.py) for the cascade.

A fast job runs the `lcm` sampler at the model's 4 steps, one network row a step (the guidance
scale is an input of the network), and draws an emoji; its provenance remakes it; the cascade
makes a 128x128 image from it; ListModels says which model is fast; a sampler that cannot draw
with a model is INVALID_ARGUMENT naming why (docs/MODEL.md, "Fast mode")."""

from __future__ import annotations

import numpy as np
import pytest

from atelier.v1 import types_pb2
from atelier_cli.main import main as cli_main
from atelier_cli.up import EmbeddedStack
from clients import Client, InvalidArgument
from repository.reader import ModelRepository
from services.common.settings import Settings
from tests.clients.deadlines import call_within, within
from tests.clients.real_stack import JOB_SECONDS, READY_SECONDS, SHIPPED_MODELS, assert_emoji, newest_version, pixels
from tests.redis_harness import redis_server

pytestmark = [pytest.mark.slow, pytest.mark.redis]

FAST, TEACHER, UPSCALER = "atelier-emoji-fast", "atelier-emoji", "tiny-upscale"
FAST_JOB = dict(prompt="a grinning cat face", style="twemoji", model=FAST)
SR_STEPS = 2


@pytest.fixture(scope="module")
def fast_stack(tmp_path_factory):
    from bench.tiny_models import tiny_upscaler_repository

    root = tmp_path_factory.mktemp("fast-stack")
    models = tiny_upscaler_repository(root)
    settings = Settings.from_env({}, model_repository=models, grpc_listen="127.0.0.1:0", gateway_metrics_port=0,
                                 worker_metrics_port=0, default_upscaler=UPSCALER, default_model=FAST)
    for name in (FAST, TEACHER):  # the shipped folders, by links (the reader refuses links only inside a version)
        (models / name).symlink_to(SHIPPED_MODELS / name, target_is_directory=True)
    fast = ModelRepository(models).open(FAST, newest_version(FAST))
    with redis_server() as server, \
            EmbeddedStack(settings, state_dir=root / "state", redis_url=server.url, worker_concurrency=2,
                          ready_timeout=READY_SECONDS) as stack:
        yield stack, fast


def finished(events):
    assert events[-1].finished.state == 3, events[-1].finished.error_message  # SUCCEEDED
    return [e.artifact for e in events if e.HasField("artifact")]


def test_list_models_says_which_model_is_fast(fast_stack):
    stack, fast = fast_stack
    with Client(stack.address, stack.api_key, timeout=30) as c:
        listed = {m.name: m for m in c.list_models()}
    f, t = listed[FAST], listed[TEACHER]
    assert (f.fast, f.default_sampler, f.default_steps, list(f.samplers)) == (
        True, types_pb2.SAMPLER_LCM, fast.manifest.defaults.steps, [types_pb2.SAMPLER_LCM])
    assert (f.guidance_min, f.guidance_max) == tuple(fast.manifest.unet.guidance_range)
    assert not t.fast and types_pb2.SAMPLER_LCM not in t.samplers and t.default_sampler != types_pb2.SAMPLER_LCM


def test_a_fast_job_draws_an_emoji_in_its_default_steps_and_its_provenance_remakes_it(fast_stack):
    stack, fast = fast_stack
    steps = fast.manifest.defaults.steps
    with Client(stack.address, stack.api_key, timeout=30) as c:
        events = within(c.generate(**FAST_JOB, seeds=[7], preview_every_steps=1), JOB_SECONDS)
        (art,) = finished(events)
        assert_emoji(art.data, fast.manifest)
        p = art.provenance
        assert (p.model_name, p.model_sha256, p.sampler, p.steps, p.guidance_scale) == (
            FAST, fast.manifest_sha256, types_pb2.SAMPLER_LCM, steps, fast.manifest.defaults.guidance_scale)
        assert {e.progress.total_steps for e in events if e.HasField("progress")} == {steps}
        assert [e.preview.step for e in events if e.HasField("preview")] == list(range(1, steps))
        again = within(c.generate(prompt=p.prompt, style=p.style, model=p.model_name, model_version=p.model_version,
                                  sampler=p.sampler, steps=p.steps, seeds=[p.seed], guidance_scale=p.guidance_scale),
                       JOB_SECONDS)
        np.testing.assert_array_equal(pixels(finished(again)[0].data), pixels(art.data))
        # Another scale in the learned range is another image from the same seed, still one row a step.
        (other,) = finished(within(c.generate(**FAST_JOB, seeds=[7], guidance_scale=3.0), JOB_SECONDS))
        assert other.data != art.data and other.provenance.guidance_scale == 3.0
        # Image-to-image runs the schedule's tail with the same sampler: strength 0.5 of 4 steps is 2.
        events = within(c.generate(**FAST_JOB, seeds=[7], init_image=art.data, strength=0.5), JOB_SECONDS)
        (edited,) = finished(events)
        assert (edited.provenance.steps_run, edited.width) == (steps // 2, 32)
        assert {e.progress.total_steps for e in events if e.HasField("progress")} == {steps // 2}


def test_the_cascade_makes_a_128_pixel_image_in_fast_mode(fast_stack):
    stack, fast = fast_stack
    steps = fast.manifest.defaults.steps
    with Client(stack.address, stack.api_key, timeout=30) as c:
        events = within(c.generate(**FAST_JOB, seeds=[3], upscale=4, upscale_steps=SR_STEPS), JOB_SECONDS)
        (art,) = finished(events)
        assert (art.width, art.height, art.provenance.sampler, art.provenance.upscaler_name) == (
            128, 128, types_pb2.SAMPLER_LCM, UPSCALER)
        assert {e.progress.total_steps for e in events if e.HasField("progress")} == {steps + SR_STEPS}


def test_the_cli_generates_with_the_fast_model(fast_stack, tmp_path, capsys, monkeypatch):
    stack, fast = fast_stack
    monkeypatch.setenv("ATELIER_GATEWAY", stack.address)
    monkeypatch.setenv("ATELIER_API_KEY", stack.api_key)
    out = tmp_path / "images"  # a folder: the CLI names each image after its job and index
    argv = ["generate", "a grinning cat face", "--model", FAST, "--style", "twemoji", "--seed", "7", "--out",
            str(out), "--no-progress"]
    assert call_within(lambda: cli_main(argv), what=lambda: "atelier generate") == 0, capsys.readouterr().err
    (image,) = out.glob("*-0.png")
    assert_emoji(image.read_bytes(), fast.manifest)
    assert call_within(lambda: cli_main(["models"]), what=lambda: "atelier models") == 0
    assert "fast: consistency-distilled" in capsys.readouterr().out


@pytest.mark.parametrize("request_fields, field, words", [
    (dict(model=FAST, sampler="euler"), "sampler", "consistency sampler only"),
    (dict(model=TEACHER, sampler="lcm"), "sampler", "draws only with a consistency-distilled"),
    (dict(model=FAST, negative_prompt="blurry"), "negative_prompt", "guidance built in"),
    (dict(model=FAST, guidance_scale=12.0), "guidance_scale", "learned for scales 2 to 8"),
], ids=["fast model, euler", "teacher, lcm", "fast model, negative prompt", "fast model, scale outside"])
def test_what_a_model_cannot_draw_with_is_invalid_argument(fast_stack, request_fields, field, words):
    stack, _ = fast_stack
    with Client(stack.address, stack.api_key, timeout=30) as c, pytest.raises(InvalidArgument) as info:
        c.submit(prompt="a red apple", seeds=[1], **request_fields)
    assert any(v.field == field and words in v.description for v in info.value.violations), info.value.violations
