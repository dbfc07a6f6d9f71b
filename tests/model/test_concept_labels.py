"""The concept classifier's labels, folds and measurement (diffusion/data/concept_labels.py,
diffusion/training/concepts.py): the rules read emoji.json as its metadata says, subjects stay
whole and the base model's held-out subjects are never trained on, and the threshold and
precision/recall arithmetic is what EVAL.md claims."""

from __future__ import annotations

import numpy as np
import pytest

from diffusion.data.concept_labels import CONCEPTS, FOLDS, TEST_FOLD, fold_of, folds, label_matrix, subject_labels
from diffusion.training.concepts import MIN_THRESHOLD, average_precision, counts, threshold_for
from services.common.policy.concepts import BY_NAME

METADATA = [
    {"unified": "1F37A", "name": "BEER MUG", "short_names": ["beer"], "subcategory": "drink"},
    {"unified": "1F375", "name": "TEACUP WITHOUT HANDLE", "short_names": ["tea"], "subcategory": "drink"},
    {"unified": "1F52B", "name": "PISTOL", "short_names": ["gun"], "subcategory": "game"},
    {"unified": "1F374", "name": "FORK AND KNIFE", "short_names": ["fork_and_knife"], "subcategory": "dishware"},
    {"unified": "1F6AC", "name": "SMOKING SYMBOL", "short_names": ["smoking"], "subcategory": "other-object"},
    {"unified": "1F6AD", "name": "NO SMOKING SYMBOL", "short_names": ["no_smoking"], "subcategory": "warning"},
    {"unified": "1F3B0", "name": "SLOT MACHINE", "short_names": ["slot_machine"], "subcategory": "game"},
    {"unified": "1F48A", "name": "PILL", "short_names": ["pill"], "subcategory": "medical"},
    # A term outside the rule's subcategories is no label: "beer" in a name that is not a drink.
    {"unified": "1F9EA", "name": "BEER GARDEN SIGN", "short_names": ["beer_sign"], "subcategory": "place-other"},
]


def _row(labels: dict, emoji_id: str) -> dict[str, int]:
    return dict(zip(CONCEPTS, labels[emoji_id], strict=True))


def test_the_rules_label_subjects_from_their_subcategory_and_names():
    labels = subject_labels(METADATA)
    assert _row(labels, "1f37a")["alcohol"] == 1 and _row(labels, "1f375")["alcohol"] == 0
    assert _row(labels, "1f52b")["weapons"] == 1 and _row(labels, "1f374")["weapons"] == 0
    assert _row(labels, "1f6ac")["tobacco"] == 1
    assert _row(labels, "1f6ad")["tobacco"] == -1  # a no-smoking sign is left out, neither way
    assert _row(labels, "1f3b0")["gambling"] == 1 and _row(labels, "1f48a")["drugs"] == 1
    assert _row(labels, "1f9ea")["alcohol"] == 0
    assert sum(v == 1 for v in _row(labels, "1f37a").values()) == 1


def test_every_concept_is_a_name_of_the_content_policy_vocabulary():
    assert set(CONCEPTS) <= set(BY_NAME)


def test_a_subject_has_one_fold_in_every_style_and_the_base_models_held_out_subjects_are_the_test_fold():
    ids = np.asarray(["1f37a", "1f37a", "1f52b", "1f52b", "1f600"])
    split = np.asarray([0, 0, 0, 0, 1])
    f = folds(ids, split)
    assert f[0] == f[1] and f[2] == f[3] and f[4] == TEST_FOLD
    assert all(0 <= fold_of(f"{i:x}", 0) < FOLDS for i in range(200))
    assert len({fold_of(f"{i:x}", 0) for i in range(200)}) == FOLDS


def test_rows_unknown_to_the_metadata_are_negatives():
    m = label_matrix(np.asarray(["1f37a", "ffff"]), METADATA)
    assert m.shape == (2, len(CONCEPTS)) and m[1].tolist() == [0] * len(CONCEPTS)


def test_the_threshold_flags_at_most_the_allowed_share_of_negatives_and_counts_skip_unsure_rows():
    score = np.asarray([0.9, 0.8, 0.7, 0.6, 0.2, 0.95])
    label = np.asarray([1, 0, 1, 0, 0, -1])
    # Three negatives (0.8, 0.6, 0.2): a third of them may be flagged -> just over 0.6, the second highest.
    t = threshold_for(score, label, 1 / 3)
    assert 0.6 < t < 0.6 + 1e-9
    assert counts(score, label, t) == {"tp": 2, "fp": 1, "fn": 0, "tn": 2}
    strict = threshold_for(score, label, 0.0)  # none may be flagged: just over the highest negative
    assert counts(score, label, strict) == {"tp": 1, "fp": 0, "fn": 1, "tn": 3}
    assert average_precision(score, label) == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_a_budget_covering_every_negative_keeps_the_threshold_inside_zero_one():
    assert threshold_for(np.asarray([0.1, 0.2]), np.asarray([0, 1]), 1.0) == MIN_THRESHOLD
