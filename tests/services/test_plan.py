"""A job's plan (services/common/plan.py): every default filled from the model once, the steps
and evaluations that will run, and a JSON form that a worker of another schema refuses."""

from __future__ import annotations

import json
import math

import pytest

from services.common.jobs import JobSpec, PromptSpec
from services.common.plan import JobPlan, ModelFacts, resolve

MODEL = ModelFacts("emoji", "3", "ef" * 32, 32, 32, "unipc", 20, 5.0, {"kind": "edm", "rho": 7.0})


def asked(**changes) -> JobSpec:
    return JobSpec(prompts=(PromptSpec("a cat", "", "flat"), PromptSpec("a dog")), seeds=(1, 2, 3)).with_(**changes)


def test_what_a_request_leaves_out_comes_from_the_model_and_the_sampler():
    plan = resolve(asked(), MODEL)
    assert (plan.sampler, plan.steps, plan.steps_run, plan.guidance_scale) == ("unipc", 20, 20, 5.0)
    assert (plan.width, plan.height, plan.model_sha256, plan.kind) == (32, 32, "ef" * 32, "txt2img")
    assert plan.sampler_options == {"order": 2, "variant": "bh2", "corrector": True}
    assert resolve(asked(sampler="euler_ancestral"), MODEL).sampler_options == {"eta": 1.0, "s_noise": 1.0}
    assert resolve(asked(sampler="euler", eta=0.3), MODEL).sampler_options["s_churn"] == 0.0  # no eta to take


def test_an_init_image_runs_the_schedule_s_tail_and_heun_costs_two_evaluations_a_step_but_the_last():
    plan = resolve(asked(sampler="heun", steps=10, init_image=b"png", strength=0.5, guidance_scale=1.0), MODEL)
    assert (plan.kind, plan.steps, plan.steps_run, plan.nfe, plan.rows) == ("img2img", 10, 5, 9, 6)
    inpaint = resolve(asked(init_image=b"png", mask=b"png", strength=1.0), MODEL)
    assert inpaint.kind == "inpaint" and "composite" in inpaint.stages and inpaint.rows == 12


def test_raw_pixels_skip_the_metadata_stage():
    assert "metadata" in resolve(asked(), MODEL).stages
    assert "metadata" not in resolve(asked(output_format="raw_rgba8"), MODEL).stages


def test_the_plan_is_stored_with_the_request_and_read_back_equal():
    spec = asked(sampler="euler").with_(plan=resolve(asked(sampler="euler"), MODEL))
    again = JobSpec.from_json(spec.to_json())
    assert again == spec and again.plan.sampler_options["s_tmax"] == math.inf
    assert again.plan.image(4) == (1, PromptSpec("a dog"), 2)


def test_a_plan_of_another_schema_or_with_unknown_fields_is_refused_by_name():
    data = resolve(asked(), MODEL).to_dict()
    with pytest.raises(ValueError, match="schema_version 2 is not 1"):
        JobPlan.from_dict({**data, "schema_version": 2})
    with pytest.raises(ValueError, match="does not know: upscale_factor"):
        JobPlan.from_dict({**json.loads(json.dumps(data)), "upscale_factor": 4})


def test_a_stored_job_whose_plan_cannot_be_read_still_reads_without_one():
    # GetJob and Watch keep working; a worker fails the job, INVALID_INPUT (test_pipeline_contract.py).
    stored = json.loads(asked().with_(plan=resolve(asked(), MODEL)).to_json())
    stored["plan"]["schema_version"] = 2
    again = JobSpec.from_json(json.dumps(stored))
    assert again.plan is None and again.prompts == asked().prompts
