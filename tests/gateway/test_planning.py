"""A job accepted by the real gateway is stored with its plan: every value the worker will run,
resolved once from the model version's manifest (services/gateway/planning.py)."""

from __future__ import annotations

import hashlib

import pytest

from clients import Client
from diffusion.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS
from tests.gateway.conftest import MODEL, png_bytes

pytestmark = pytest.mark.redis


def stored_plan(stack, **fields):
    with Client(stack.address, stack.keys.alice, timeout=10) as c:
        handle = c.submit("a cat", seeds=[5], **fields)
    return stack.store.get(handle.job_id).spec.plan


def test_a_request_that_leaves_everything_out_is_planned_with_the_manifest_s_values(stack, model_repo):
    plan = stored_plan(stack)
    manifest = (model_repo / MODEL / "1" / "manifest.json").read_bytes()
    assert (plan.model, plan.model_version, plan.model_sha256) == (MODEL, "1", hashlib.sha256(manifest).hexdigest())
    assert (plan.kind, plan.sampler, plan.steps, plan.steps_run) == ("txt2img", DEFAULT_SAMPLER, DEFAULT_STEPS,
                                                                   DEFAULT_STEPS)
    assert (plan.guidance_scale, plan.width, plan.height, plan.seeds) == (DEFAULT_GUIDANCE, 32, 32, (5,))
    assert plan.schedule["kind"] == "edm" and plan.schedule["spacing"] == "karras"
    assert plan.stages[-4:] == ("metadata", "encode", "credentials", "report")


def test_an_image_to_image_request_is_planned_with_the_steps_that_will_run_and_the_sampler_s_eta(stack):
    init = png_bytes(32, 32)
    plan = stored_plan(stack, sampler="heun", steps=10, init_image=init, strength=0.5, guidance_scale=1.0,
                       output_format="raw")
    assert (plan.kind, plan.steps, plan.steps_run, plan.nfe, plan.rows) == ("img2img", 10, 5, 9, 1)
    assert plan.init_image_sha256 == hashlib.sha256(init).hexdigest() and "metadata" not in plan.stages
    assert stored_plan(stack, sampler="dpmpp_2m_sde").sampler_options["eta"] == 1.0


def test_a_float_field_is_planned_as_the_decimal_the_client_wrote_not_its_32_bit_neighbour(stack):
    plan = stored_plan(stack, init_image=png_bytes(32, 32), strength=0.6, guidance_scale=7.3, guidance_rescale=0.7,
                       sampler="euler_ancestral", eta=0.3)
    assert (plan.strength, plan.guidance_scale, plan.guidance_rescale) == (0.6, 7.3, 0.7)
    assert plan.sampler_options["eta"] == 0.3
