"""bench/dataset.py: its pure helpers, and its --quick run end to end (a tiny model through the
real stack: a dataset job and the same images as one-image jobs, compared)."""

from __future__ import annotations

import json

import pytest

from bench.dataset import images_of, layout, main


def test_a_layout_makes_exactly_the_images_asked_over_every_style():
    prompts, styles, seeds = layout(4000, ["none", "noto", "twemoji", "fluent-flat"], [f"p{i}" for i in range(8)])
    assert (len(prompts), len(styles), len(seeds)) == (8, 4, 125)
    assert len(images_of(prompts, styles, seeds)) == 4000
    assert layout(30, ["a", "b", "c"], ["x", "y", "z", "w"]) == (["x", "y"], ["a", "b", "c"], list(range(5)))
    with pytest.raises(ValueError, match="do not split over 4 styles"):
        layout(10, ["a", "b", "c", "d"])


def test_images_come_in_the_dataset_s_order():
    assert images_of(["p", "q"], ["s", "t"], [1, 2])[:5] == [("p", "s", 1), ("p", "s", 2), ("p", "t", 1),
                                                            ("p", "t", 2), ("q", "s", 1)]


@pytest.mark.slow
@pytest.mark.redis
def test_the_quick_run_compares_both_sides(capsys):
    assert main(["--quick", "--check", "8"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    figures = record["figures"]
    assert figures["images"] == 48 and figures["images_compared"]["checked"] == 8
    assert figures["dataset_images_per_s"][0] > 0 and figures["individual_images_per_s"][0] > 0
