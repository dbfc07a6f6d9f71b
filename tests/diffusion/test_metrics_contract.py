"""diffusion/metrics.py against hand-computed values where the easy cases hide mistakes: a class
marginal that is not uniform, a class nobody predicts, single-precision input, no labelled rows."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from diffusion.metrics import (
    adherence,
    chance_adherence,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)


def test_inception_score_by_hand_with_an_uneven_marginal_and_an_unused_class():
    probs = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    # p(y) = (0.75, 0.25, 0); KL of rows 1 and 4: ln(1/0.75); of rows 2 and 3: 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25).
    kl_sure, kl_split = math.log(1 / 0.75), 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2.0)
    score, spread = inception_score(probs, splits=1)
    assert score == pytest.approx(math.exp((kl_sure + kl_split) / 2), rel=1e-9)
    assert spread == 0.0


def test_inception_score_computes_in_double_precision_whatever_it_is_given():
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=64)
    single = probs.astype(np.float32)
    assert inception_score(single, splits=4) == inception_score(single.astype(np.float64), splits=4)


def test_inception_score_names_the_shape_it_needs():
    with pytest.raises(ValueError, match=r"^probs must be \[N, classes\]$"):
        inception_score(np.ones(10))


def test_adherence_without_a_labelled_row_is_undefined():
    probs = np.eye(3)
    unlabelled = np.array([-1, -1, -1])
    assert math.isnan(adherence(probs, unlabelled)) and math.isnan(chance_adherence(probs, unlabelled))


def test_feature_metrics_compute_in_double_precision_whatever_they_are_given():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 3)).astype(np.float32), rng.standard_normal((40, 3)).astype(np.float32) + 0.3
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    assert frechet_distance(x, y) == frechet_distance(x64, y64)
    assert kernel_inception_distance(x, y, subsets=3, subset_size=20) == kernel_inception_distance(
        x64, y64, subsets=3, subset_size=20)


def test_each_metric_names_what_is_wrong_with_its_input():
    with pytest.raises(ValueError, match="^" + re.escape("features must be [N, D], got shape (10,)") + "$"):
        frechet_distance(np.ones(10), np.ones((10, 2)))
    with pytest.raises(ValueError, match="^KID needs at least 2 samples per set$"):
        kernel_inception_distance(np.ones((1, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="^" + re.escape("precision/recall needs more than k=3 samples per set") + "$"):
        precision_recall(np.ones((3, 2)), np.ones((5, 2)))


def test_kid_defaults_are_the_papers_and_repeatable():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((1001, 2)), rng.standard_normal((1001, 2))
    # subset_size 1000 (Bińkowski et al. 2018, §4): 1001 rows, so the default draws a subset.
    assert kernel_inception_distance(x, y, subsets=2) == kernel_inception_distance(x, y, subsets=2, subset_size=1000)
    small = dict(subset_size=10)
    assert kernel_inception_distance(x, y, **small) == kernel_inception_distance(x, y, subsets=100, seed=0, **small)
    assert kernel_inception_distance(x, y, **small) == kernel_inception_distance(x, y, **small)


def test_kid_kernel_by_hand_with_the_default_and_a_given_gamma():
    x, y = np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[1.0, 1.0], [0.0, 0.0]])

    def by_hand(gamma: float) -> float:
        k = lambda a, b: (gamma * (a @ b) + 1.0) ** 3  # noqa: E731
        return k(x[0], x[1]) + k(y[0], y[1]) - 2 * np.mean([k(a, b) for a in x for b in y])

    assert kernel_inception_distance(x, y, subsets=2)[0] == pytest.approx(by_hand(1 / 2))  # gamma = 1/D
    assert kernel_inception_distance(x, y, subsets=2, gamma=3.0)[0] == pytest.approx(by_hand(3.0))


def test_kid_draws_subsets_of_the_smaller_set_and_of_subset_size():
    three_same, two = np.ones((3, 1)), np.array([[0.0], [2.0]])
    # Every draw of two rows from identical rows is the same, so the value is exact: m = 2.
    k = lambda a, b: (a * b + 1.0) ** 3  # noqa: E731
    expected = k(1, 1) + k(0, 2) - 2 * np.mean([k(1, 0), k(1, 2)])
    assert kernel_inception_distance(three_same, two, subsets=3)[0] == pytest.approx(expected)
    assert kernel_inception_distance(two, three_same, subsets=3)[0] == pytest.approx(expected)
    distinct = np.array([[0.0], [1.0], [3.0]])
    assert kernel_inception_distance(distinct, distinct + 1, subset_size=3)[1] == 0.0  # every row, every time
    assert kernel_inception_distance(distinct, distinct + 1, subset_size=2)[1] > 0.0  # two of three rows


REAL_1D = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])


def test_precision_recall_the_same_in_small_batches():
    fake = np.array([[-5.0], [-2.0], [5.0], [15.0], [18.0], [20.0]])
    for batch in (1, 2, 4):
        assert precision_recall(REAL_1D, fake, k=2, batch=batch) == precision_recall(REAL_1D, fake, k=2)


def test_a_fake_exactly_on_a_ball_s_edge_is_inside_it():
    # k=1: the ball around 10 has radius 4 (its nearest neighbour is 6), so 14 lies on its edge.
    fake = np.array([[14.0], [14.5], [100.0]])
    assert precision_recall(REAL_1D, fake, k=1)[0] == 1 / 3
