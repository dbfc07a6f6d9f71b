"""An image's provenance, sent back as a request, makes the same image bit for bit: for every
sampler and every job kind (text-to-image, image-to-image, inpainting, seamless tiles). Every
option is recorded at the value that ran (a stochastic sampler's eta defaults to 1.0, not
0.0), and the provenance says how many steps ran (an img2img strength runs the schedule's tail)."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from diffusion.sampler_catalog import CATALOG
from services.common.jobs import JobRecord, JobSpec, PromptSpec
from services.worker.pipeline import generate
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
}


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
    runtime = toy_runtime.ToyRuntime()
    reporter = Collect()
    generate(JobRecord("j", "acme", toy_runtime.planned(job_spec)), runtime,
             lambda tiling, shape: runtime.denoiser(tiling), reporter)
    ((data, blob),) = reporter.artifacts
    return data, blob, reporter.steps_total


def replay(p: dict, init_image: bytes | None = None, mask: bytes | None = None) -> JobSpec:
    """The request a client builds from an artifact's provenance and the images it sent."""
    assert (hashlib.sha256(init_image).hexdigest() if init_image else "") == p["init_image_sha256"]
    assert (hashlib.sha256(mask).hexdigest() if mask else "") == p["mask_sha256"]
    return JobSpec(prompts=(PromptSpec(p["prompt"], p["negative_prompt"], p["style"]),), seeds=(p["seed"],),
                   model=p["model_name"], model_version=p["model_version"], output_format="raw_rgba8",
                   sampler=p["sampler"], steps=p["steps"], guidance_scale=p["guidance_scale"], eta=p["eta"],
                   width=p["width"], height=p["height"], tiling=p["tiling"], guidance_rescale=p["guidance_rescale"],
                   strength=p["strength"], init_image=init_image, mask=mask)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("sampler", sorted(CATALOG))
def test_replaying_a_provenance_remakes_the_image(sampler, kind):
    asked = JobSpec(prompts=(PromptSpec("a red apple", "blurry", "flat"),), seeds=(11,), output_format="raw_rgba8",
                    sampler=sampler, steps=6, **KINDS[kind])
    data, blob, steps_total = run(asked)
    provenance = data["provenance"]
    assert provenance["eta"] == CATALOG[sampler].options.get("eta", 0.0)
    assert provenance["steps_run"] == steps_total == {"img2img": 3, "inpaint": 4}.get(kind, 6)
    assert (provenance["tiling"], provenance["strength"]) == (asked.tiling, asked.strength)
    again, blob_again, _ = run(replay(provenance, asked.init_image, asked.mask))
    assert again["provenance"] == provenance
    assert blob_again == blob


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
