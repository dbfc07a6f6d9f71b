"""An image's provenance, sent back as a request, makes the same image bit for bit: for every
sampler and every job kind (text-to-image, image-to-image, inpainting, seamless tiles, the
cascade through the upscaler, UPSCALE). Every option is recorded at the value that ran (a
stochastic sampler's eta defaults to 1.0, not 0.0), and the provenance says how many steps ran
(an img2img strength runs the schedule's tail) and names both models and both step counts."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from diffusion.sampler_catalog import CATALOG
from services.common.jobs import JobRecord, JobSpec, PromptSpec
from services.worker.pipeline import Upscaler, generate
from tests.services import toy_runtime


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


INIT = png(np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8))
MASK = png(np.where(np.arange(16)[None, :] >= 8, 255, 0).repeat(16, axis=0).astype(np.uint8))

KINDS = {
    "txt2img": {},
    "img2img": {"init_image": INIT, "strength": 0.5},
    "inpaint": {"init_image": INIT, "mask": MASK, "strength": 0.75},
    "tiling": {"tiling": True},
    "cascade": {"upscale": 4},
    "inpaint+upscale": {"init_image": INIT, "mask": MASK, "strength": 0.75, "upscale": 4, "upscale_steps": 2},
}
# An upload to upscale: 12x10 (not a multiple of the upscaler's size step), RGB.
UPLOAD = png(np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8))


class Collect:
    def __init__(self):
        self.artifacts: list[tuple[dict, bytes]] = []
        self.steps_total = None

    def check(self): ...
    def preview(self, *args): ...

    def progress(self, steps_done, steps_total, images_done):
        self.steps_total = steps_total

    def artifact(self, payload, blob):
        self.artifacts.append((dataclasses.asdict(payload), blob))  # the payload as its stream JSON holds it


def run(job_spec: JobSpec) -> tuple[dict, bytes, int]:
    """(artifact data, image bytes, the steps the job said it would run) of a one-image job."""
    runtime, sr = toy_runtime.ToyRuntime(), toy_runtime.ToyUpscaler()
    reporter = Collect()
    generate(JobRecord("j", "acme", toy_runtime.planned(job_spec)), runtime,
             lambda tiling, shape: runtime.denoiser(tiling), reporter, upscaler=Upscaler(sr, sr.denoiser()))
    ((data, blob),) = reporter.artifacts
    return data, blob, reporter.steps_total


def _sha256(data: bytes | None) -> str:
    return hashlib.sha256(data).hexdigest() if data else ""


def replay(p: dict, init_image: bytes | None = None, mask: bytes | None = None,
           upscale_image: bytes | None = None) -> JobSpec:
    """The request a client builds from an artifact's provenance and the images it sent."""
    assert _sha256(init_image) == p["init_image_sha256"] and _sha256(mask) == p["mask_sha256"]
    assert _sha256(upscale_image) == p["upscale_image_sha256"]
    return JobSpec(prompts=(PromptSpec(p["prompt"], p["negative_prompt"], p["style"]),), seeds=(p["seed"],),
                   model=p["model_name"], model_version=p["model_version"], output_format="raw_rgba8",
                   sampler=p["sampler"], steps=p["steps"], guidance_scale=p["guidance_scale"], eta=p["eta"],
                   width=p["width"], height=p["height"], tiling=p["tiling"], guidance_rescale=p["guidance_rescale"],
                   strength=p["strength"], init_image=init_image, mask=mask, upscale=p["upscale"],
                   upscale_steps=p["upscale_steps"], upscaler=p["upscaler_name"],
                   upscaler_version=p["upscaler_version"], upscale_fast=p["upscale_fast"], upscale_image=upscale_image)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("sampler", sorted(CATALOG))
def test_replaying_a_provenance_remakes_the_image(sampler, kind):
    asked = JobSpec(prompts=(PromptSpec("a red apple", "blurry", "flat"),), seeds=(11,), output_format="raw_rgba8",
                    sampler=sampler, steps=6, **KINDS[kind])
    data, blob, steps_total = run(asked)
    provenance = data["provenance"]
    assert provenance["eta"] == CATALOG[sampler].options.get("eta", 0.0)
    assert provenance["steps_run"] == {"img2img": 3}.get(kind, 4 if "inpaint" in kind else 6)
    assert steps_total == provenance["steps_run"] + provenance["upscale_steps"]
    assert (provenance["tiling"], provenance["strength"]) == (asked.tiling, asked.strength)
    again, blob_again, _ = run(replay(provenance, asked.init_image, asked.mask))
    assert again["provenance"] == provenance
    assert blob_again == blob


@pytest.mark.parametrize("fast", [False, True])
def test_a_cascade_s_provenance_names_both_models_and_both_step_counts(fast):
    asked = JobSpec(prompts=(PromptSpec("a red apple", "", "flat"),), seeds=(11,), output_format="raw_rgba8",
                    steps=6, upscale=4, upscale_fast=fast)
    data, blob, steps_total = run(asked)
    p = data["provenance"]
    assert (p["model_name"], p["steps"], p["steps_run"]) == ("toy", 6, 6)
    assert (p["upscaler_name"], p["upscaler_version"], p["upscaler_sha256"]) == ("toy-upscale", "1",
                                                                                toy_runtime.UPSCALER_SHA256)
    assert (p["upscale"], p["upscale_steps"], p["upscale_fast"]) == (4, 0 if fast else 3, fast)
    assert steps_total == 6 + (1 if fast else 3)
    # The provenance states the image before upscaling; the artifact is 4 times larger.
    assert (p["width"], p["height"], data["width"], data["height"]) == (16, 16, 64, 64)
    assert len(blob) == 64 * 64 * 4


@pytest.mark.parametrize("fast", [False, True])
def test_an_upscale_job_s_provenance_remakes_it_from_the_same_upload(fast):
    asked = JobSpec(prompts=(PromptSpec(""),), seeds=(5,), output_format="raw_rgba8", upscale_image=UPLOAD,
                    upscale_fast=fast)
    data, blob, steps_total = run(asked)
    p = data["provenance"]
    assert (p["model_name"], p["model_sha256"], p["sampler"], p["steps"]) == ("", "", "", 0)
    assert (p["width"], p["height"], data["width"], data["height"]) == (12, 10, 48, 40)
    assert (p["upscale"], p["upscale_steps"], p["upscale_image_sha256"]) == (4, 0 if fast else 3, _sha256(UPLOAD))
    assert steps_total == (1 if fast else 3)
    again, blob_again, _ = run(replay(p, upscale_image=UPLOAD))
    assert again["provenance"] == p and blob_again == blob
    other_seed = run(replay({**p, "seed": 6}, upscale_image=UPLOAD))[1]
    assert (other_seed == blob) is fast  # the chain's noise is the seed's; the one-pass network has none


def test_the_upscaler_s_steps_and_network_change_the_image():
    base = JobSpec(prompts=(PromptSpec("a red apple", "", "flat"),), seeds=(3,), output_format="raw_rgba8", steps=4)
    blobs = {run(base.with_(**kw))[1] for kw in ({"upscale": 4}, {"upscale": 4, "upscale_steps": 1},
                                                  {"upscale": 4, "upscale_fast": True})}
    assert len(blobs) == 3


def test_each_kind_makes_its_own_image():
    # Seamless tiles aside: every image of the toy model tiles (tests/services/toy_runtime.py).
    blobs = {kind: run(JobSpec(prompts=(PromptSpec("a red apple", "", "flat"),), seeds=(11,),
                               output_format="raw_rgba8", steps=6, **KINDS[kind]))[1]
             for kind in ("txt2img", "img2img", "inpaint")}
    assert len(set(blobs.values())) == 3


def test_an_eta_asked_for_is_the_eta_recorded_and_it_changes_the_image():
    base = JobSpec(prompts=(PromptSpec("a red apple", "", "flat"),), seeds=(3,), output_format="raw_rgba8",
                   sampler="euler_ancestral", steps=5)
    default, default_blob, _ = run(base)
    half, half_blob, _ = run(base.with_(eta=0.5))
    assert (default["provenance"]["eta"], half["provenance"]["eta"]) == (1.0, 0.5)
    assert half_blob != default_blob
