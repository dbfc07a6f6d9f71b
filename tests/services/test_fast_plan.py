"""A fast (consistency-distilled, guidance built in) model's plan: the `lcm` sampler at its default
steps, one row an image a step (no classifier-free guidance rows), so its cost and ETA count
`steps x images` row evaluations, and a worker sampling it feeds the scale to the network
(docs/MODEL.md, "Fast mode")."""

from __future__ import annotations

import numpy as np

from diffusion.guidance import GUIDANCE_INPUT, EmbeddedGuidance
from services.common import cost
from services.common.jobs import JobSpec, PromptSpec
from services.common.plan import JobPlan, ModelFacts, resolve

SCHEDULE = {"kind": "edm", "sigma_min": 0.5, "sigma_max": 80.0, "rho": 7.0, "spacing": "karras"}
FAST = ModelFacts("emoji-fast", "1", "fa" * 32, 32, 32, "lcm", 4, 5.0, SCHEDULE, consistency=True,
                  guidance_input=True)
TEACHER = ModelFacts("emoji", "2", "ef" * 32, 32, 32, "unipc", 20, 5.0, {**SCHEDULE, "sigma_min": 0.002})


def asked(**changes) -> JobSpec:
    return JobSpec(prompts=(PromptSpec("a cat", "", "twemoji"),), seeds=(1, 2)).with_(**changes)


def test_a_fast_job_runs_lcm_at_four_steps_one_row_an_image():
    plan = resolve(asked(), FAST)
    assert (plan.sampler, plan.steps, plan.nfe, plan.guidance_scale) == ("lcm", 4, 4, 5.0)
    assert plan.guidance_input and not plan.guided and plan.rows == 2
    assert cost.of_plan(plan).row_evaluations == 4 * 2
    teacher = resolve(asked(), TEACHER)
    assert teacher.guided and teacher.rows == 4 and cost.of_plan(teacher).row_evaluations == 20 * 4
    # The same measured row time makes the fast job's sampling ETA 10x shorter (8 rows against 80).
    measured = {m: {"32x32": {"row": 0.01, "fixed": 0.0}} for m in ("emoji-fast/1", "emoji/2")}
    assert cost.estimate_plan(teacher, measured) == 10 * cost.estimate_plan(plan, measured)


def test_the_ramp_end_is_in_the_plan_and_the_plan_reads_back_equal():
    plan = resolve(asked(), FAST)
    assert plan.schedule["sigma_min"] == 0.5
    again = JobPlan.from_dict(plan.to_dict())
    assert again == plan and again.guidance_input and again.rows == 2


def test_a_plan_stored_before_fast_mode_reads_as_classifier_free_guidance():
    data = resolve(asked(), TEACHER).to_dict()
    del data["guidance_input"]
    assert JobPlan.from_dict(data).rows == 4


def test_embedded_guidance_feeds_the_scale_to_the_network_in_one_call_of_b_rows():
    calls = []

    def net(x, sigma, cond):
        calls.append((x.shape[0], dict(cond)))
        return x * cond[GUIDANCE_INPUT][:, None, None, None]

    x = np.ones((3, 4, 8, 8), np.float32)
    out = EmbeddedGuidance(net, {"style": np.arange(3)}, 6.0)(x, np.ones(3))
    assert len(calls) == 1 and calls[0][0] == 3
    assert calls[0][1][GUIDANCE_INPUT].dtype == np.float32 and np.all(out == 6.0)
