"""Metrics: Fréchet distance closed form, KID unbiasedness, precision/recall, Inception Score."""

import numpy as np
import pytest

from diffusion.metrics import (
    feature_statistics,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    # Commuting (diagonal) covariances: sum (sqrt(l1) - sqrt(l2))².
    d1, d2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 0.0])
    assert frechet_distance_from_stats(np.zeros(3), d1, np.ones(3), d2) == pytest.approx(3 + 1 + 1 + 9)
    # General case against an independent formula: tr((S1 S2)^½) from the eigenvalues of S1 S2.
    tr_sqrt = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).real))
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance_from_stats(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance_from_stats(m1, s1, m1, s1) == pytest.approx(0, abs=1e-9)
    # From samples: converges to the closed form.
    x = rng.multivariate_normal(m1, s1, 20000)
    y = rng.multivariate_normal(m2, s2, 20000)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.05)
    mu, cov = feature_statistics(x)
    assert mu.shape == (5,) and cov.shape == (5, 5)


def test_kid_is_unbiased():
    rng = np.random.default_rng(1)
    values = []
    for i in range(40):
        x, y = rng.standard_normal((100, 8)), rng.standard_normal((100, 8))
        values.append(kernel_inception_distance(x, y, subsets=5, subset_size=50, seed=i)[0])
    values = np.array(values)
    # Mean over many draws of identical distributions is 0 within its standard error.
    assert abs(values.mean()) < 3 * values.std() / np.sqrt(len(values))
    assert values.min() < 0  # an unbiased estimator goes negative
    shifted, _ = kernel_inception_distance(
        rng.standard_normal((500, 8)), rng.standard_normal((500, 8)) + 0.5, subsets=10, subset_size=200
    )
    assert shifted > 10 * values.std()


def test_kid_exact_value_for_tiny_sets():
    x, y = np.array([[1.0], [2.0]]), np.array([[0.0], [1.0]])
    k = lambda a, b: (a * b + 1.0) ** 3  # noqa: E731
    expected = (2 * k(1, 2)) / 2 + (2 * k(0, 1)) / 2 - 2 * np.mean([k(a, b) for a in (1, 2) for b in (0, 1)])
    mean, std = kernel_inception_distance(x, y, subsets=3, subset_size=2)
    assert mean == pytest.approx(expected) and std == pytest.approx(0)


def test_precision_recall():
    rng = np.random.default_rng(2)
    real = rng.standard_normal((1000, 2))
    p, r = precision_recall(real, rng.standard_normal((1000, 2)))
    assert p > 0.9 and r > 0.9
    # Mode collapse: all fakes near the centre -> high precision, low recall.
    p, r = precision_recall(real, 0.1 * rng.standard_normal((1000, 2)))
    assert p > 0.95 and r < 0.3
    # Fakes off the manifold -> low precision.
    p, _ = precision_recall(real, rng.standard_normal((1000, 2)) + 6.0)
    assert p < 0.05


def test_inception_score():
    confident = np.eye(10)[np.arange(1000) % 10]
    assert inception_score(confident)[0] == pytest.approx(10.0, rel=1e-6)
    assert inception_score(np.full((1000, 10), 0.1))[0] == pytest.approx(1.0)


def test_precision_recall_by_hand_for_each_k():
    # 1-D, so every ball is an interval. Distances from each real point to its k-th nearest other:
    #   k=1: 1 1 2 3 4 -> union of balls [-1, 14];  k=2: 3 2 3 4 7 -> [-3, 17];  k=3: 6 5 3 5 9 -> [-6, 19]
    real = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    fake = np.array([[-5.0], [-2.0], [5.0], [15.0], [18.0], [20.0]])
    # Fakes inside: k=1 only 5; k=2 also -2 and 15; k=3 also -5 and 18. Every real point lies in
    # the fakes' balls for each k (the fakes' k=1 radii 3 3 7 3 2 2 already cover [-8, 22]).
    assert precision_recall(real, fake, k=1) == (1 / 6, 1.0)
    assert precision_recall(real, fake, k=2) == (3 / 6, 1.0)
    assert precision_recall(real, fake) == precision_recall(real, fake, k=3) == (5 / 6, 1.0)
    # Roles swapped: the same coverage is now recall's.
    assert precision_recall(fake, real, k=2) == (1.0, 3 / 6)
