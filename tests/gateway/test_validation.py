"""Every validation rule answers INVALID_ARGUMENT naming its field, and nothing is queued."""

import math
import struct
import time
import zlib

import grpc
import pytest
from google.protobuf import timestamp_pb2

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import types_pb2
from tests.gateway.conftest import png_bytes
from tests.gateway.helpers import Stubs, auth, violations

pytestmark = [pytest.mark.redis, pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]

LIMITS = dict(max_upload_bytes=20_000, max_upload_pixels=128 * 128, max_bulk_prompts=4, max_images_per_job=8,
              max_steps=50, max_prompt_chars=100)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + chunk(b"IEND", b""))


def gif_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="GIF")
    return buf.getvalue()


def truncated_png() -> bytes:
    """The first half of a valid PNG: its header is whole, its pixel data is not."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((32, 32), 64).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def jpeg_without_scan() -> bytes:
    """SOI, a baseline frame header (SOF0) for 32x32 RGB, EOI: a header with no image data."""
    components = bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    sof0 = struct.pack(">HBHHB", 8 + len(components), 8, 32, 32, 3) + components
    return b"\xff\xd8" + b"\xff\xc0" + sof0 + b"\xff\xd9"


def deadline(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def img(data: bytes) -> types_pb2.InputImage:
    return types_pb2.InputImage(data=data)


def past() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromSeconds(int(time.time()) - 60)
    return ts


CASES = {
    "width not a multiple of the latent factor": (dict(width=30), "width"),
    "width over the limit": (dict(width=512), "width"),
    "height not a multiple": (dict(height=33), "height"),
    "height over the limit": (dict(height=1024), "height"),
    "fixed-size model at another size": (dict(model="fixed-model", width=64), "width"),
    "too many steps": (dict(steps=51), "steps"),
    "guidance too large": (dict(guidance_scale=31.0), "guidance_scale"),
    "guidance negative": (dict(guidance_scale=-1.0), "guidance_scale"),
    "guidance not a number": (dict(guidance_scale=math.nan), "guidance_scale"),
    "guidance rescale out of range": (dict(guidance_rescale=1.5), "guidance_rescale"),
    "eta out of range": (dict(eta=2.0), "eta"),
    "empty prompt": (dict(prompt=""), "prompt"),
    "prompt too long": (dict(prompt="x" * 101), "prompt"),
    "negative prompt too long": (dict(negative_prompt="x" * 101), "negative_prompt"),
    "too many seeds": (dict(seeds=list(range(9))), "seeds"),
    "count too large": (dict(count=9), "count"),
    "unknown model": (dict(model="nope"), "model"),
    "unknown version": (dict(model_version="7"), "model_version"),
    "unknown style": (dict(style="watercolour"), "style"),
    "unknown sampler number": (dict(sampler=99), "sampler"),
    "unknown priority number": (dict(priority=9), "priority"),
    "unknown output format": (dict(output_format=9), "output_format"),
    "quality over 100": (dict(output_quality=101), "output_quality"),
    "tiling on a model without it": (dict(tiling=True), "tiling"),
    "init image over the byte limit": (dict(init_image=img(b"\x89PNG" + b"\0" * 20_001), strength=0.5),
                                       "init_image.data"),
    "init image over the pixel limit": (dict(init_image=img(png_bytes(200, 100)), strength=0.5),
                                        "init_image.data"),
    "decompression bomb (Pillow would refuse)": (dict(init_image=img(png_claiming(100_000, 100_000)), strength=0.5),
                                                 "init_image.data"),
    "decompression bomb (Pillow would only warn)": (dict(init_image=img(png_claiming(10_000, 10_000)),
                                                         strength=0.5), "init_image.data"),
    "unsupported format (GIF)": (dict(init_image=img(gif_bytes()), strength=0.5), "init_image.data"),
    "not an image": (dict(init_image=img(b"hello world" * 10), strength=0.5), "init_image.data"),
    "init image set but empty": (dict(init_image=img(b""), strength=0.5), "init_image.data"),
    "init image on a model without an encoder": (dict(model="fixed-model", init_image=img(png_bytes(32, 32)),
                                                      strength=0.5), "init_image"),
    "strength above 1": (dict(init_image=img(png_bytes(32, 32)), strength=1.5), "strength"),
    "strength missing with an init image": (dict(init_image=img(png_bytes(32, 32))), "strength"),
    "strength without an init image": (dict(strength=0.5), "strength"),
    "mask without an init image": (dict(mask=img(png_bytes(32, 32))), "mask"),
    "mask of the wrong size": (dict(init_image=img(png_bytes(32, 32)), strength=0.5, mask=img(png_bytes(16, 16))),
                               "mask.data"),
    "mask over the pixel limit": (dict(init_image=img(png_bytes(32, 32)), strength=0.5,
                                       mask=img(png_bytes(256, 256))), "mask.data"),
    "bulk with a prompt too": (dict(prompts=[gen.PromptVariant(prompt="a")]), "prompt"),
    "too many bulk prompts": (dict(prompt="", prompts=[gen.PromptVariant(prompt="a")] * 5), "prompts"),
    "bulk images over the job limit": (dict(prompt="", prompts=[gen.PromptVariant(prompt="a")] * 3, seeds=[1, 2, 3]),
                                       "prompts"),
    "bulk variant without a prompt": (dict(prompt="", prompts=[gen.PromptVariant(prompt="a"), gen.PromptVariant()]),
                                      "prompts[1].prompt"),
    "bulk variant with an unknown style": (dict(prompt="", prompts=[gen.PromptVariant(prompt="a", style="oil")]),
                                           "prompts[0].style"),
    "too many labels": (dict(labels={f"k{i}": "v" for i in range(17)}), "labels"),
    "label value too long": (dict(labels={"k": "v" * 129}), "labels['k']"),
    "request id too long": (dict(request_id="r" * 129), "request_id"),
    "deadline already passed": (dict(deadline=past()), "deadline"),
    "deadline nanos of two seconds": (dict(deadline=deadline(int(time.time()) + 60, 2_000_000_000)), "deadline"),
    "deadline nanos negative": (dict(deadline=deadline(int(time.time()) + 60, -1)), "deadline"),
    "deadline seconds past year 9999": (dict(deadline=deadline(10**13)), "deadline"),
    "deadline seconds the least int64": (dict(deadline=deadline(-(2**63))), "deadline"),
    "init image truncated (half a PNG)": (dict(init_image=img(truncated_png()), strength=0.5), "init_image.data"),
    "init image a JPEG with no scan": (dict(init_image=img(jpeg_without_scan()), strength=0.5), "init_image.data"),
    "mask truncated (half a PNG)": (dict(init_image=img(png_bytes(32, 32)), strength=0.5, mask=img(truncated_png())),
                                    "mask.data"),
    "mask a JPEG with no scan": (dict(init_image=img(png_bytes(32, 32)), strength=0.5, mask=img(jpeg_without_scan())),
                                 "mask.data"),
}


@pytest.fixture
def vstack(make_stack, model_repo_two):
    return make_stack(model_repository=model_repo_two, **LIMITS)


def _job_keys(stack) -> list:
    return list(stack.redis.scan_iter(match=f"{stack.gateway.settings.key_prefix}job:*"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_rule_names_its_field_and_queues_nothing(vstack, case):
    fields, field = CASES[case]
    fields = {"prompt": "a red fox", **fields}
    stubs = Stubs(vstack.address)
    for call in (stubs.gen.Submit, lambda r, **kw: list(stubs.gen.Generate(r, **kw))):
        with pytest.raises(grpc.RpcError) as err:
            call(gen.GenerateRequest(**fields), metadata=auth(vstack.keys.alice), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, err.value.details())
        found = violations(err.value)
        assert field in found, (case, found)
        assert found[field]
    assert vstack.queue.sent == [] and _job_keys(vstack) == []
    stubs.close()


NOT_EVENT_IDS = {
    "ms past 64 bits": "18446744073709551616-0",
    "seq past 64 bits": "0-18446744073709551616",
    "a very long digit string": "1" * 5000,
    "a dash and no seq": "5-",
    "digits of another script": "\u0661\u0662-0",
    "three parts": "1-2-3",
    "a space": " 1-0",
    "negative": "-1",
    "the last possible id (nothing follows it)": "18446744073709551615-18446744073709551615",
}


@pytest.mark.parametrize("case", sorted(NOT_EVENT_IDS))
def test_watch_refuses_what_is_not_an_event_id(vstack, case):
    stubs = Stubs(vstack.address)
    job_id = stubs.gen.Submit(gen.GenerateRequest(prompt="a fox"), metadata=auth(vstack.keys.alice), timeout=10).job_id
    with pytest.raises(grpc.RpcError) as err:
        list(stubs.gen.Watch(gen.WatchRequest(job_id=job_id, after_event_id=NOT_EVENT_IDS[case]),
                             metadata=auth(vstack.keys.alice), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert violations(err.value)["after_event_id"]
    stubs.close()


def test_watch_takes_the_largest_ids_that_are_event_ids(vstack):
    stubs = Stubs(vstack.address)
    job_id = stubs.gen.Submit(gen.GenerateRequest(prompt="a fox"), metadata=auth(vstack.keys.alice), timeout=10).job_id
    stubs.gen.CancelJob(gen.CancelJobRequest(job_id=job_id), metadata=auth(vstack.keys.alice), timeout=10)
    # The job is final, so Watch returns what follows `after` and ends: queued and finished, or nothing.
    follows = {"0": 2, "00000000000000000001-0": 2, "18446744073709551615": 0,
               "18446744073709551615-18446744073709551614": 0}
    for after, count in follows.items():
        events = list(stubs.gen.Watch(gen.WatchRequest(job_id=job_id, after_event_id=after),
                                      metadata=auth(vstack.keys.alice), timeout=10))
        assert len(events) == count, after
    stubs.close()


def test_every_bad_field_is_reported_at_once(vstack):
    stubs = Stubs(vstack.address)
    bad = gen.GenerateRequest(prompt="", width=30, steps=99, style="oil", output_quality=200, strength=0.3,
                              labels={f"k{i}": "v" for i in range(20)})
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.Submit(bad, metadata=auth(vstack.keys.alice), timeout=10)
    assert set(violations(err.value)) >= {"prompt", "width", "steps", "style", "output_quality", "strength", "labels"}
    stubs.close()


def test_a_good_request_with_images_passes(vstack):
    stubs = Stubs(vstack.address)
    ok = gen.GenerateRequest(prompt="a fox", width=64, height=32, style="google", seeds=[1, 2], steps=10,
                             sampler=types_pb2.SAMPLER_EULER, guidance_scale=4.0, strength=0.6,
                             init_image=img(png_bytes(32, 32)), mask=img(png_bytes(32, 32, "L")),
                             output_format=types_pb2.OUTPUT_FORMAT_RAW_RGBA8, labels={"campaign": "spring"})
    handle = stubs.gen.Submit(ok, metadata=auth(vstack.keys.alice), timeout=10)
    assert handle.state == types_pb2.JOB_STATE_QUEUED and list(handle.seeds) == [1, 2]
    record = vstack.store.get(handle.job_id)
    assert record.spec.model == "test-model" and record.spec.model_version == "1"  # pinned at submission
    assert record.spec.sampler == "euler" and record.spec.output_format == "raw_rgba8"
    assert record.spec.init_image == ok.init_image.data
    stubs.close()


def test_sizes_follow_the_unet_size_step_not_only_the_vae_factor():
    from repository.manifest import LatentSpec, Manifest, UNetSpec
    from services.common.jobs import JobSpec, PromptSpec
    from services.common.settings import Settings
    from services.gateway.catalog import ModelEntry
    from services.gateway.validation import Limits, _size

    # A VAE that divides by 4 and a UNet that halves its latent once: sides step by 8.
    manifest = Manifest(name="m", version="1", latent=LatentSpec(factor=4, dynamic_size=True),
                        unet=UNetSpec(latent_multiple=2))
    model = ModelEntry("m", "1", manifest, "0" * 64, max_size=1024)
    limits = Limits.from_settings(Settings())
    spec = JobSpec(prompts=(PromptSpec("a cat"),), seeds=(1,), width=36, height=40)
    assert _size(spec, model, limits) == [("width", "36 is not a multiple of 8, the model's size step")]
