"""An image's provenance, sent back as a request, makes the same image: every option is recorded
at the value that ran (a stochastic sampler's eta defaults to 1.0, not 0.0)."""

from __future__ import annotations

import pytest

from diffusion.sampler_catalog import CATALOG
from services.common.jobs import JobRecord, JobSpec, PromptSpec
from services.worker.pipeline import generate
from tests.services import toy_runtime


class Collect:
    def __init__(self):
        self.artifacts: list[tuple[dict, bytes]] = []

    def check(self): ...
    def progress(self, *args): ...
    def preview(self, *args): ...

    def artifact(self, data, blob):
        self.artifacts.append((data, blob))


def run(job_spec: JobSpec) -> list[tuple[dict, bytes]]:
    runtime = toy_runtime.ToyRuntime()
    reporter = Collect()
    generate(JobRecord("j", "acme", job_spec), runtime, lambda tiling, shape: runtime.denoiser(tiling), reporter)
    return reporter.artifacts


def replay(provenance: dict) -> JobSpec:
    """The request a client builds from an artifact's provenance alone."""
    return JobSpec(prompts=(PromptSpec(provenance["prompt"], provenance["negative_prompt"], provenance["style"]),),
                   seeds=(provenance["seed"],), output_format="raw_rgba8", sampler=provenance["sampler"],
                   steps=provenance["steps"], guidance_scale=provenance["guidance_scale"], eta=provenance["eta"],
                   width=provenance["width"], height=provenance["height"], tiling=provenance["tiling"],
                   guidance_rescale=provenance["guidance_rescale"])


@pytest.mark.parametrize("sampler", sorted(CATALOG))
def test_replaying_a_provenance_remakes_the_image(sampler):
    asked = JobSpec(prompts=(PromptSpec("a red apple", "blurry", "flat"),), seeds=(11,), output_format="raw_rgba8",
                    sampler=sampler, steps=5)
    ((data, blob),) = run(asked)
    provenance = data["provenance"]
    assert provenance["eta"] == CATALOG[sampler].options.get("eta", 0.0)
    ((again, blob_again),) = run(replay(provenance))
    assert again["provenance"] == provenance
    assert blob_again == blob


def test_an_eta_asked_for_is_the_eta_recorded_and_it_changes_the_image():
    base = JobSpec(prompts=(PromptSpec("a red apple", "", "flat"),), seeds=(3,), output_format="raw_rgba8",
                   sampler="euler_ancestral", steps=5)
    ((default, default_blob),) = run(base)
    ((half, half_blob),) = run(base.with_(eta=0.5))
    assert (default["provenance"]["eta"], half["provenance"]["eta"]) == (1.0, 0.5)
    assert half_blob != default_blob
