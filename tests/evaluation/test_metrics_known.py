"""The metrics on inputs whose answer is known, in the classifier's feature space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion import metrics
from diffusion.evaluation.classifier import ClassifierConfig, DomainClassifier
from diffusion.evaluation.embed import embed
from diffusion.evaluation.report import LabelledSet, set_figures
from diffusion.metrics import adherence, chance_adherence


@pytest.fixture(scope="module")
def embedded(fixture_dataset):
    torch.manual_seed(0)
    cfg = ClassifierConfig(channels=(8, 16), feature_dim=16, categories=tuple(fixture_dataset.categories),
                           styles=tuple(fixture_dataset.styles[1:]))
    return embed(DomainClassifier(cfg), fixture_dataset.images)


def test_identical_sets_have_zero_distance(embedded):
    f = embedded.features
    assert metrics.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6 * np.trace(np.cov(f, rowvar=False)))
    kid, _ = metrics.kernel_inception_distance(f, f, subsets=5)
    # Unbiased MMD² of a set with itself: the diagonal-free averages cancel up to sampling noise.
    assert abs(kid) < 1e-3 * np.mean(((f @ f.T) / f.shape[1] + 1.0) ** 3)
    assert metrics.precision_recall(f, f) == (1.0, 1.0)


def test_shifted_set_has_positive_distance(embedded):
    f = embedded.features
    shifted = f + f.std(axis=0, keepdims=True)
    # Equal covariances: the distance is the squared distance of the means.
    assert metrics.frechet_distance(f, shifted) == pytest.approx((f.std(axis=0) ** 2).sum(), rel=1e-6)


def test_report_figures_of_a_set_against_itself(embedded, fixture_dataset):
    cats = fixture_dataset.category_ids
    stys = fixture_dataset.style_ids - 1
    figures = set_figures(LabelledSet(embedded, cats, stys), embedded, kid_subsets=5)
    assert figures["fid"] == pytest.approx(0.0, abs=1e-6)
    assert figures["precision"] == figures["recall"] == 1.0
    assert 1.0 <= figures["is_category"] <= len(fixture_dataset.categories)


def test_shuffled_labels_give_chance_adherence():
    rng = np.random.default_rng(0)
    n, k = 600, 9
    labels = rng.integers(0, k, n)
    # A classifier that is right 80% of the time, and otherwise guesses uniformly.
    pred = np.where(rng.random(n) < 0.8, labels, rng.integers(0, k, n))
    probs = np.eye(k)[pred]
    assert adherence(probs, labels) > 0.8
    chance = chance_adherence(probs, labels)
    shuffled = [adherence(probs, rng.permutation(labels)) for _ in range(300)]
    assert np.mean(shuffled) == pytest.approx(chance, abs=0.005)
    assert chance == pytest.approx(1.0 / k, abs=0.03)


def test_adherence_skips_rows_without_a_label():
    probs = np.eye(3)[[0, 1, 2, 0]]
    assert adherence(probs, np.array([0, 1, -1, 2])) == pytest.approx(2 / 3)
    assert np.isnan(adherence(probs, np.full(4, -1)))
