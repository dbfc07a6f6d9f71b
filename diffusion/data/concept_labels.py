"""Concept labels of the emoji data, read off the emoji metadata's own subcategories and names.

The output concept classifier (docs/MODEL.md, "Concept classifier") learns which images show a
concept a tenant's content policy may block. Its labels are not drawn by hand: each concept is a
rule over ``emoji.json`` (emoji-datasource, the captions' source): a set of subcategories and the
terms, in the emoji's name or short names, that mark the concept inside them. A subject matching
a rule's ``unsure`` terms is neither a positive nor a negative of that concept (a no-smoking sign
shows a cigarette; card suits are playing cards or just shapes): it is left out of that concept's
loss and of its precision and recall.

Folds keep subjects whole and keep the base model's split: the base model's validation subjects
(``split`` 1) are the classifier's test subjects, never trained on, and the rest fall into
``FOLDS`` cross-validation folds by a hash of the subject id, so every style of one emoji is in
one fold.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

FOLDS = 5
TEST_FOLD = -1  # the base model's validation subjects


@dataclass(frozen=True)
class ConceptRule:
    concept: str                      # a concept name of the content policy's vocabulary
    subcategories: tuple[str, ...]    # emoji.json subcategories the concept's subjects are in
    terms: tuple[str, ...]            # phrases of the name or short names that mark it there
    unsure: tuple[str, ...] = ()      # phrases (any subcategory) whose subjects are left unlabelled


RULES: tuple[ConceptRule, ...] = (
    ConceptRule("weapons", ("tool", "game", "dishware"),
                ("pistol", "gun", "dagger", "crossed swords", "bow and arrow", "bomb", "axe", "boomerang", "hocho"),
                unsure=("shield",)),
    ConceptRule("alcohol", ("drink",),
                ("beer", "beers", "wine glass", "cocktail", "tropical drink", "sake", "champagne", "tumbler glass",
                 "clinking glasses")),
    ConceptRule("tobacco", ("other-object",), ("smoking", "cigarette"), unsure=("no smoking",)),
    ConceptRule("drugs", ("medical",), ("syringe", "pill")),
    ConceptRule("gambling", ("game",),
                ("slot machine", "game die", "playing cards", "joker", "mahjong"),
                unsure=("spade suit", "club suit", "heart suit", "diamond suit", "billiards")),
)
CONCEPTS: tuple[str, ...] = tuple(r.concept for r in RULES)


def _text(entry: dict) -> str:
    names = [entry.get("name") or "", *(entry.get("short_names") or [])]
    return " | ".join(n.replace("_", " ").replace("-", " ").lower() for n in names)


def _has(text: str, phrases: Iterable[str]) -> bool:
    return any(re.search(rf"\b{re.escape(p)}\b", text) for p in phrases)


def subject_labels(metadata: list[dict], rules: tuple[ConceptRule, ...] = RULES) -> dict[str, tuple[int, ...]]:
    """emoji id -> one label a rule: 1 positive, 0 negative, -1 unsure (left out)."""
    out = {}
    for entry in metadata:
        text = _text(entry)
        row = []
        for rule in rules:
            if _has(text, rule.unsure):
                row.append(-1)
            else:
                row.append(int(entry.get("subcategory") in rule.subcategories and _has(text, rule.terms)))
        out[entry["unified"].lower()] = tuple(row)
    return out


def label_matrix(emoji_ids: np.ndarray, metadata: list[dict],
                 rules: tuple[ConceptRule, ...] = RULES) -> np.ndarray:
    """int8 [N, concepts] labels of a dataset's rows; a subject missing from the metadata is negative."""
    by_subject = subject_labels(metadata, rules)
    empty = (0,) * len(rules)
    return np.asarray([by_subject.get(str(e), empty) for e in emoji_ids], dtype=np.int8).reshape(-1, len(rules))


def fold_of(emoji_id: str, split: int) -> int:
    """TEST_FOLD for the base model's validation subjects, else 0..FOLDS-1 by a hash of the subject."""
    if split == 1:
        return TEST_FOLD
    digest = hashlib.sha256(f"concepts:{emoji_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % FOLDS


def folds(emoji_ids: np.ndarray, split: np.ndarray) -> np.ndarray:
    return np.asarray([fold_of(str(e), int(s)) for e, s in zip(emoji_ids, split, strict=True)], dtype=np.int64)
