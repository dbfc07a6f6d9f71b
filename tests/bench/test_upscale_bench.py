"""The pure helpers of bench/upscale.py and bench/batch_cost.py (the benchmarks themselves time
things and run by hand; docs/BENCHMARKS.md holds their figures)."""

from __future__ import annotations

import pytest
from pytest import approx

from bench.batch_cost import batch_gain, per_row_ms
from bench.upscale import first_in_pair, paired_ratios, quartiles, rates, speedups


def test_pairs_alternate_abba():
    assert [first_in_pair(i) for i in range(8)] == ["base", "cascade", "cascade", "base"] * 2


def test_paired_ratios_divide_each_pair_and_refuse_uneven_lists():
    assert paired_ratios([0.2, 0.4], [0.5, 0.6]) == approx([2.5, 1.5])
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_ratios([0.2], [0.5, 0.6])
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_ratios([], [])


def test_quartiles():
    assert quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == approx((2.0, 3.0, 4.0))


def test_rates_and_speedups():
    assert rates([{"images": 8, "wall_s": 2.0}, {"images": 1, "wall_s": 0.5}]) == approx([4.0, 2.0])
    assert speedups({"1": 6.0, "4": 9.0}, {"1": 3.0, "8": 1.0}) == approx({"1": 2.0})


def test_per_row_cost_and_the_gain_a_batch_can_give():
    rows = {2: per_row_ms(10.0, 2), 16: per_row_ms(48.0, 16)}
    assert rows == approx({2: 5.0, 16: 3.0})
    assert batch_gain(rows, 2, 16) == approx(5.0 / 3.0)
