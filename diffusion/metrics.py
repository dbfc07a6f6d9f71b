"""Sample-quality metrics over feature arrays ``[N, D]`` from any feature function.

Features may come from the project's own domain classifier or from an Inception network whose
weights a user has locally; these functions only see arrays.  numpy only.

* :func:`frechet_distance` — FID's distance between Gaussians fitted to two feature sets
  (Heusel et al. 2017, eq. 6; Dowson & Landau 1982).
* :func:`kernel_inception_distance` — unbiased MMD² with the cubic polynomial kernel
  (Bińkowski et al. 2018, "Demystifying MMD GANs", eq. 4 and §4), averaged over subsets.
* :func:`precision_recall` — improved precision and recall (Kynkäänniemi et al. 2019, eqs. 1-2).
* :func:`inception_score` — exp E_x KL(p(y|x) || p(y)) (Salimans et al. 2016, §4) from class
  probabilities of any classifier.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_score",
    "kernel_inception_distance",
    "precision_recall",
]


def _features(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {f.shape}")
    return f


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` of a feature set (what FID caches)."""
    f = _features(features)
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    lam, u = np.linalg.eigh((a + a.T) / 2)
    return (u * np.sqrt(np.maximum(lam, 0.0))) @ u.T


def frechet_distance_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """d² = |mu1 - mu2|² + tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½).

    tr((S1 S2)^½) is computed as the trace of the symmetric square root of S1^½ S2 S1^½ (same
    eigenvalues as S1 S2), with eigh only, so it stays real and stable for singular covariances.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    lam = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sum(np.sqrt(np.maximum(lam, 0.0)))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean)


def frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID when features are Inception's)."""
    return frechet_distance_from_stats(*feature_statistics(features1), *feature_statistics(features2))


def _poly_kernel(a: np.ndarray, b: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (gamma * (a @ b.T) + coef0) ** degree


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Unbiased KID: mean and std over ``subsets`` of the unbiased MMD² estimate.

    Kernel k(x, y) = (gamma x·y + coef0)^degree with gamma = 1/D by default (Bińkowski et al.
    2018).  Each subset draws ``min(subset_size, N1, N2)`` rows of each set without replacement
    (``seed`` fixes the draws).  The estimator drops the diagonals of k(X, X) and k(Y, Y), so its
    expectation is exactly MMD², 0 for identical distributions; single values can be negative.
    """
    f1, f2 = _features(features1), _features(features2)
    d = f1.shape[1]
    gamma = 1.0 / d if gamma is None else gamma
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        kxx = _poly_kernel(x, x, degree, gamma, coef0)
        kyy = _poly_kernel(y, y, degree, gamma, coef0)
        kxy = _poly_kernel(x, y, degree, gamma, coef0)
        sum_xx = kxx.sum() - np.trace(kxx)
        sum_yy = kyy.sum() - np.trace(kyy)
        values[i] = (sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * kxy.mean()
    return float(values.mean()), float(values.std())


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _knn_radii(f: np.ndarray, k: int, batch: int) -> np.ndarray:
    """Squared distance from each row to its k-th nearest other row."""
    radii = np.empty(f.shape[0])
    for start in range(0, f.shape[0], batch):
        d = _sq_distances(f[start : start + batch], f)
        # Column k of the sorted row: index 0 is the point itself (distance 0).
        radii[start : start + batch] = np.partition(d, k, axis=1)[:, k]
    return radii


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, batch: int) -> float:
    """Fraction of ``points`` inside at least one ball (centre, k-NN radius) of the other set."""
    inside = np.zeros(points.shape[0], dtype=bool)
    for start in range(0, points.shape[0], batch):
        d = _sq_distances(points[start : start + batch], centres)
        inside[start : start + batch] = np.any(d <= radii[None, :], axis=1)
    return float(inside.mean())


def precision_recall(
    real_features: np.ndarray, fake_features: np.ndarray, *, k: int = 3, batch: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    The manifold of a set is the union of balls around its points with radius the distance to the
    k-th nearest neighbour (k=3 as in the paper).  Precision: fraction of fake samples inside the
    real manifold; recall: fraction of real samples inside the fake manifold.
    """
    real, fake = _features(real_features), _features(fake_features)
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall needs more than k={k} samples per set")
    precision = _coverage(fake, real, _knn_radii(real, k, batch), batch)
    recall = _coverage(real, fake, _knn_radii(fake, k, batch), batch)
    return precision, recall


def inception_score(probs: np.ndarray, *, splits: int = 10, eps: float = 1e-12) -> tuple[float, float]:
    """Inception Score analogue: mean and std over ``splits`` of exp(E KL(p(y|x) || p(y))).

    ``probs`` is ``[N, classes]`` of class probabilities (rows summing to 1) from any classifier;
    p(y) is the mean over each split.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError("probs must be [N, classes]")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (np.log(part + eps) - np.log(py + eps)), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# --- prompt adherence ---------------------------------------------------------------------
# Adherence is top-1 agreement between a classifier's prediction and the label an image was
# asked for (for real images: accuracy). Its chance level is what the same predictions score
# against labels shuffled among the images: sum_c P(pred = c) P(label = c), the "expected
# agreement" term of Cohen's kappa (Cohen 1960).


def adherence(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax is the row's label; rows with label < 0 are skipped."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    keep = labels >= 0
    if not keep.any():
        return float("nan")
    return float((probs[keep].argmax(axis=1) == labels[keep]).mean())


def chance_adherence(probs: np.ndarray, labels: np.ndarray) -> float:
    """Expected adherence of the same predictions against randomly permuted labels."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    keep = labels >= 0
    if not keep.any():
        return float("nan")
    k = probs.shape[1]
    pred = np.bincount(probs[keep].argmax(axis=1), minlength=k) / keep.sum()
    true = np.bincount(labels[keep], minlength=k) / keep.sum()
    return float(pred @ true)
