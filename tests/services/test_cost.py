"""Estimates for sizes no worker has run yet: a per-row line fitted on the sizes measured."""

import pytest

from services.common import cost


def _job(side: int, nfe: int = 10) -> cost.JobCost:
    return cost.JobCost(nfe=nfe, rows=2, width=side, height=side, model="m/1")


def test_an_unmeasured_size_is_estimated_from_a_line_through_the_measured_ones():
    times = cost.RowTimes()
    # Per row: 1 ms plus 1 us a pixel; each job also spends 50 ms outside its sampler.
    for side in (32, 128):
        per_row = 0.001 + 1e-6 * side * side
        times.record(_job(side), 0.05 + 20 * per_row, 20 * per_row)
    measured = cost.merge([times.snapshot()])
    assert cost.estimate(_job(64, nfe=30), measured) == pytest.approx(0.05 + 60 * (0.001 + 1e-6 * 64 * 64))
    # A measured size answers for itself; a Heun job of the same steps costs its own NFE.
    assert cost.estimate(_job(128, nfe=19), measured) == pytest.approx(0.05 + 38 * (0.001 + 1e-6 * 128 * 128))


def test_one_measured_size_scales_with_pixels_and_none_falls_back_to_the_default():
    times = cost.RowTimes()
    times.record(_job(32), 0.02, 0.02)  # 1 ms a row at 32²
    measured = times.snapshot()
    assert cost.row_seconds("m/1", 64, 64, measured) == pytest.approx(0.004)
    assert cost.row_seconds("other/1", 32, 32, measured) == pytest.approx(cost.DEFAULT_ROW_SECONDS_PER_PIXEL * 1024)


def test_a_running_job_is_told_its_estimate_until_a_step_has_run_then_its_own_pace():
    assert cost.remaining_seconds(0.3, 0, 40, planned=2.0) == 2.0
    assert cost.remaining_seconds(1.0, 10, 40, planned=2.0) == pytest.approx(3.0)


def test_a_job_that_upscales_costs_its_base_sampling_plus_its_upscaler_s_steps_at_the_output_size():
    from services.common.jobs import JobSpec, PromptSpec
    from services.common.plan import ModelFacts, UpscalerFacts, resolve

    model = ModelFacts("emoji", "2", "ab" * 32, 32, 32, "euler", 10, 1.0, {"kind": "edm"})
    upscaler = UpscalerFacts("sr", "1", "cd" * 32, factor=4, default_steps=4, sigma_min=0.002, sigma_max=1.0, rho=7.0,
                             aug_level=0.1, size_multiple=8, tile=64, tile_overlap=16, max_input_side=512)
    asked = JobSpec(prompts=(PromptSpec("a cat"),), seeds=(1, 2, 3))
    times = cost.RowTimes()
    times.record(cost.JobCost(10, 3, 32, 32, "emoji/2"), 0.5, 0.3)   # 10 ms a row, 0.2 s outside sampling
    times.record(cost.JobCost(4, 3, 128, 128, "sr/1"), 0.6, 0.6)     # 50 ms a row at 128²
    measured = times.snapshot()

    plain = resolve(asked, model)
    cascade = resolve(asked.with_(upscale=4), model, upscaler)
    assert cost.estimate_plan(plain, measured) == pytest.approx(0.2 + 10 * 3 * 0.01)
    assert cost.estimate_plan(cascade, measured) == pytest.approx(0.2 + 10 * 3 * 0.01 + 4 * 3 * 0.05)
    assert [p.model for p in cost.parts(cascade, images=1)] == ["emoji/2", "sr/1"]
    # An UPSCALE job costs only its upscaler, at its upload's size times 4.
    upload = resolve(asked.with_(upscale_image=b"png", prompts=(PromptSpec(""),)), None, upscaler, (32, 32))
    assert cost.parts(upload) == (cost.JobCost(4, 3, 128, 128, "sr/1"),)
    assert cost.estimate_plan(upload, measured) == pytest.approx(4 * 3 * 0.05)
