"""The fast model's EVAL.md (diffusion/evaluation/fast_report.py): issue 14's goals judged against
the teacher's figures, and runs made with other prompts, seeds or classifier refused."""

from __future__ import annotations

import pytest

from diffusion.evaluation.fast_report import check_comparable, goals, markdown


def run(fid: float, cat: float, sty: float, seed: int = 0, steps: int = 4) -> dict:
    figures = {"fid": fid, "kid": 1.0, "precision": 0.5, "recall": 0.5, "is_category": 1.0, "is_style": 1.0,
               "category_adherence": cat, "style_adherence": sty}
    return {"model": {"label": "m", "checkpoint": "models/m/1"}, "classifier": {"path": "clf"},
            "reference": {"images": 10},
            "generation": {"split": "validation", "prompts": 5, "seeds_per_prompt": 1, "seed": seed, "images": 5,
                           "sampler": "lcm", "steps": steps, "guidance": 6.0, "sigma_min": 0.002},
            "sets": {"generated": figures, "real": figures}}


TEACHER = {**run(10.0, 0.5, 0.6), "generation": {**run(0, 0, 0)["generation"], "sampler": "unipc", "steps": 20,
                                                 "guidance": 5.0}}


def test_the_goals_are_ratios_to_the_teacher_s_figures():
    judged = goals(TEACHER, {4: run(11.0, 0.476, 0.57), 2: run(13.1, 0.4, 0.4, steps=2)})
    met = {(g["steps"], g["figure"]): g["met"] for g in judged}
    assert met == {(4, "fid"): True, (4, "category_adherence"): True, (4, "style_adherence"): True,
                   (2, "fid"): False}
    assert not goals(TEACHER, {4: run(11.1, 0.5, 0.6)})[0]["met"]


def test_a_run_with_other_seeds_is_not_compared():
    with pytest.raises(ValueError, match="seed"):
        check_comparable(TEACHER, {"4": run(11.0, 0.5, 0.6, seed=1000)})


def test_the_report_has_every_step_count_the_teacher_and_the_goals():
    text = markdown("m/1", TEACHER, {1: run(12.0, 0.4, 0.5, steps=1), 4: run(11.0, 0.5, 0.6)}, 4,
                    {"w 5": run(11.5, 0.5, 0.6)}, ["atelier eval model models/m/1"])
    assert "| 1 step | 4 steps (default) | teacher m (unipc, 20 steps, guidance 5)" in text
    assert "4 steps: fid <= 1.1x the teacher's | 11.000 | 11.000 | 1.100 | yes |" in text
    assert "| w 5 | 11.50 |" in text and "atelier eval model models/m/1" in text
