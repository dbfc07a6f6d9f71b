"""Requests that upscale, at the real gateway: the cascade (`upscale`) and UPSCALE jobs (`upscale_image`).

Every rule names its field and queues nothing (an image to upscale that is a bomb, broken, too
large for the upscaler, or of a colour mode it does not take is refused at Submit, never a
failed job); a good request is stored with its plan: the upscaler pinned, its steps, network and
sampling constants, the stage after decoding, progress steps that count both stages, and an
ETA that covers both. ListModels says which entries are upscalers."""

from __future__ import annotations

import hashlib
import io

import grpc
import pytest
from PIL import Image

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import models_pb2, types_pb2
from repository.manifest import FileEntry, Manifest, UpscalerSpec
from services.common import readiness
from tests.gateway.conftest import MODEL, write_model
from tests.gateway.helpers import Stubs, auth, violations
from tests.gateway.test_validation import gif_bytes, jpeg_without_scan, png_claiming, truncated_png

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]

UPSCALER = "test-upscale"
SPEC = UpscalerSpec(factor=4, sigma_min=0.01, sigma_max=1.5, rho=7.0, aug_level=0.1, default_steps=4,
                    size_multiple=8, max_input_side=48, tile=32, tile_overlap=8)
LIMITS = dict(max_upload_bytes=20_000, max_upload_pixels=128 * 128, max_steps=50, max_side=256)


def write_upscaler(root, name: str = UPSCALER, version: str = "1", fast: bool = True) -> None:
    folder = root / name / version
    folder.mkdir(parents=True)
    files, components = {}, {}
    for role in ("upscaler", "upscaler_fast") if fast else ("upscaler",):
        blob = f"not really onnx: {role}".encode()
        (folder / f"{role}.onnx").write_bytes(blob)
        files[f"{role}.onnx"] = FileEntry(hashlib.sha256(blob).hexdigest(), len(blob), role=role)
        components[role] = f"{role}.onnx"
    manifest = Manifest(name=name, version=version, description="a test upscaler", upscaler=SPEC,
                        components=components, files=files)
    (folder / "manifest.json").write_text(manifest.to_json())


@pytest.fixture
def upstack(make_stack, tmp_path, redis_url):
    root = tmp_path / "models-sr"
    write_model(root)
    write_upscaler(root)
    write_upscaler(root, "slow-upscale", fast=False)
    stack = make_stack(model_repository=root, default_upscaler=UPSCALER, **LIMITS)
    readiness.report(stack.redis, stack.gateway.settings.key_prefix,
                     readiness.WorkerStatus("scripted@test", (f"{MODEL}/1", f"{UPSCALER}/1"), concurrency=2), ttl=60)
    return stack


def img(data: bytes) -> types_pb2.InputImage:
    return types_pb2.InputImage(data=data)


def image_bytes(width: int, height: int, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format=fmt)
    return buf.getvalue()


UPLOAD = image_bytes(20, 12)
CASES = {
    "a cascade factor the upscaler does not make": (dict(upscale=2), "upscale"),
    "an unknown upscaler": (dict(upscale=4, upscaler="nope"), "upscaler"),
    "a text-to-image model as the upscaler": (dict(upscale=4, upscaler=MODEL), "upscaler"),
    "an upscaler as the base model": (dict(model=UPSCALER), "model"),
    "an unknown upscaler version": (dict(upscale=4, upscaler_version="9"), "upscaler_version"),
    "too many upscaler steps": (dict(upscale=4, upscale_steps=51), "upscale_steps"),
    "steps with the one-pass network": (dict(upscale=4, upscale_fast=True, upscale_steps=2), "upscale_steps"),
    "the one-pass network of an upscaler without one": (dict(upscale=4, upscaler="slow-upscale", upscale_fast=True),
                                                        "upscale_fast"),
    "upscaler steps without upscaling": (dict(upscale_steps=4), "upscale_steps"),
    "an upscaler without upscaling": (dict(upscale=1, upscaler=UPSCALER), "upscaler"),
    "a base image over the upscaler's input side": (dict(upscale=4, width=64, height=64), "upscale"),
    "an upload with a prompt": (dict(upscale_image=img(UPLOAD)), "prompt"),
    "an upload with a base model": (dict(prompt="", upscale_image=img(UPLOAD), model=MODEL), "model"),
    "an upload with sampler steps": (dict(prompt="", upscale_image=img(UPLOAD), steps=10), "steps"),
    "an upload with an init image": (dict(prompt="", upscale_image=img(UPLOAD), init_image=img(UPLOAD),
                                          strength=0.5), "init_image"),
    "an upload with a bulk prompt": (dict(prompt="", upscale_image=img(UPLOAD),
                                          prompts=[gen.PromptVariant(prompt="a")]), "prompts"),
    "an upload with another factor": (dict(prompt="", upscale_image=img(UPLOAD), upscale=2), "upscale"),
    "an upload at another width": (dict(prompt="", upscale_image=img(UPLOAD), width=40), "width"),
    "an upload set but empty": (dict(prompt="", upscale_image=img(b"")), "upscale_image.data"),
    "an upload that is not an image": (dict(prompt="", upscale_image=img(b"hello" * 20)), "upscale_image.data"),
    "an upload that is a GIF": (dict(prompt="", upscale_image=img(gif_bytes())), "upscale_image.data"),
    "an upload that is a bomb": (dict(prompt="", upscale_image=img(png_claiming(100_000, 100_000))),
                                 "upscale_image.data"),
    "an upload truncated": (dict(prompt="", upscale_image=img(truncated_png())), "upscale_image.data"),
    "an upload of a JPEG with no scan": (dict(prompt="", upscale_image=img(jpeg_without_scan())),
                                         "upscale_image.data"),
    "an upload over the upscaler's input side": (dict(prompt="", upscale_image=img(image_bytes(64, 8))),
                                                 "upscale_image.data"),
    "an upload in CMYK": (dict(prompt="", upscale_image=img(image_bytes(16, 16, "CMYK", "JPEG"))),
                          "upscale_image.data"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_upscale_rule_names_its_field_and_queues_nothing(upstack, case):
    fields, field = CASES[case]
    fields = {"prompt": "a red fox", **fields}
    stubs = Stubs(upstack.address)
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.Submit(gen.GenerateRequest(**fields), metadata=auth(upstack.keys.alice), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, err.value.details())
    found = violations(err.value)
    assert found.get(field), (case, found)
    assert upstack.queue.sent == []
    stubs.close()


def test_an_upscaled_size_over_the_side_limit_is_refused(make_stack, tmp_path):
    root = tmp_path / "models-small"
    write_model(root)
    write_upscaler(root)
    stack = make_stack(model_repository=root, default_upscaler=UPSCALER, **{**LIMITS, "max_side": 100})
    stubs = Stubs(stack.address)
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.Submit(gen.GenerateRequest(prompt="a fox", upscale=4, width=32, height=32),
                         metadata=auth(stack.keys.alice), timeout=10)
    assert "128x128, over the limit of 100 pixels a side" in violations(err.value)["upscale"]
    stubs.close()


def submitted(stack, **fields):
    stubs = Stubs(stack.address)
    try:
        handle = stubs.gen.Submit(gen.GenerateRequest(**fields), metadata=auth(stack.keys.alice), timeout=10)
        job = stubs.gen.GetJob(gen.GetJobRequest(job_id=handle.job_id), metadata=auth(stack.keys.alice), timeout=10)
    finally:
        stubs.close()
    return handle, job, stack.store.get(handle.job_id)


def test_a_cascade_is_planned_with_the_upscaler_pinned_and_both_stages_counted(upstack):
    handle, job, record = submitted(upstack, prompt="a red apple", seeds=[3, 4], steps=10, upscale=4,
                                    upscale_steps=2)
    plan = record.spec.plan
    assert (record.spec.upscaler, record.spec.upscaler_version) == (UPSCALER, "1")  # pinned at submission
    u = plan.upscale
    assert (u.model, u.version, u.factor, u.steps, u.fast) == (UPSCALER, "1", 4, 2, False)
    assert (u.sigma_min, u.sigma_max, u.aug_level, u.size_multiple, u.tile, u.tile_overlap) == (0.01, 1.5, 0.1, 8,
                                                                                                 32, 8)
    manifest = (upstack.gateway.settings.model_repository / UPSCALER / "1" / "manifest.json").read_bytes()
    assert u.sha256 == hashlib.sha256(manifest).hexdigest()
    assert plan.stages[:4] == ("condition", "sample", "decode", "upscale")
    assert (plan.width, plan.output_width, plan.steps_per_image) == (32, 128, 12)
    assert job.steps_total == 2 * 12 and handle.eta.ToNanoseconds() > 0


def test_the_upscaler_s_defaults_and_its_one_pass_network_are_planned(upstack):
    plan = submitted(upstack, prompt="a red apple", upscale=4)[2].spec.plan
    assert (plan.upscale.steps, plan.upscale.nfe) == (SPEC.default_steps, SPEC.default_steps)
    fast = submitted(upstack, prompt="a red apple", upscale=4, upscale_fast=True)[2].spec.plan
    assert (fast.upscale.steps, fast.upscale.fast, fast.upscale.nfe) == (0, True, 1)
    assert submitted(upstack, prompt="a red apple", upscale=1)[2].spec.plan.upscale is None  # 1: no upscaling


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "L"])
def test_an_upscale_job_is_planned_from_its_upload_and_runs_only_the_upscaler(upstack, mode):
    upload = image_bytes(20, 12, mode)
    handle, job, record = submitted(upstack, upscale_image=img(upload), seeds=[7], upscale_steps=3)
    plan = record.spec.plan
    assert (plan.kind, plan.model, plan.model_sha256, plan.stages) == ("upscale", "", "", ("upscale", "metadata",
                                                                                         "encode", "credentials",
                                                                                         "report"))
    assert (plan.width, plan.height, plan.output_width, plan.output_height) == (20, 12, 80, 48)
    assert plan.upscale_image_sha256 == hashlib.sha256(upload).hexdigest()
    assert record.spec.upscale_image == upload  # stored with the job, like an init image
    assert (job.model, job.model_version, job.steps_total) == (UPSCALER, "1", 3)


def test_list_models_says_which_entries_are_upscalers(upstack):
    stubs = Stubs(upstack.address)
    reply = stubs.models.ListModels(models_pb2.ListModelsRequest(), metadata=auth(upstack.keys.alice), timeout=10)
    models = {m.name: m for m in reply.models}
    stubs.close()
    assert models[MODEL].upscale_factor == 0
    up = models[UPSCALER]
    assert (up.upscale_factor, up.max_input_side, up.default_steps, up.fast_upscaler, up.ready) == (4, 48, 4, True,
                                                                                                    True)
    assert models["slow-upscale"].fast_upscaler is False and models["slow-upscale"].ready is False
