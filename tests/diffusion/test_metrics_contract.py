"""diffusion/metrics.py against hand-computed values where the easy cases hide mistakes: a class
marginal that is not uniform, a class nobody predicts, single-precision input, no labelled rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffusion.metrics import adherence, chance_adherence, inception_score


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
    with pytest.raises(ValueError, match=r"probs must be \[N, classes\]"):
        inception_score(np.ones(10))


def test_adherence_without_a_labelled_row_is_undefined():
    probs = np.eye(3)
    unlabelled = np.array([-1, -1, -1])
    assert math.isnan(adherence(probs, unlabelled)) and math.isnan(chance_adherence(probs, unlabelled))
