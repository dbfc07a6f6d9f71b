"""Prompt adherence: how often the classifier finds the prompted label in an image.

Adherence is top-1 agreement between the classifier's prediction and the label the image was
asked for (for real images: the label it has, i.e. accuracy). Its chance level is what the
same predictions would score against labels shuffled among the images:
sum_c P(pred = c) P(label = c), the expected agreement of two independent labelings (the
"expected agreement" term of Cohen's kappa, Cohen 1960). numpy only.
"""

from __future__ import annotations

import numpy as np


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
