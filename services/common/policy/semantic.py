"""The semantic match: a prompt against the concepts' exemplars in the model's own text encoder.

Each concept's exemplars (services.common.policy.lexicon) are encoded once; a prompt's score for
a concept is the highest cosine between its pooled token states and any exemplar, over the
whole prompt and each of its clauses (the encoder reads a few dozen tokens; a long prompt hides
nothing in its tail). A concept matches when its score is above the prompt's score against the
benign neighbours (`BENIGN_EXEMPLARS` and the shipped model's own emoji subjects) and reaches the
concept's threshold, calibrated on the
calibration half of tests/policy_prompts/ (bench/policy_prompts.py; thresholds.json records the
text encoder's file hash it was calibrated for: another encoder's space needs its own).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.policy.encode_batch import BatchedEncode
from services.common.policy.lexicon import BENIGN_EXEMPLARS, EXEMPLARS

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.json")
# The benign anchors' pooled states as the calibrated text encoder gives them (float16, [N, D]):
# nearly two thousand texts take seconds to encode on a busy CPU, a gateway reads them at once.
ANCHORS_FILE = Path(__file__).with_name("anchors.npy")
# The names of the emoji the shipped model was trained on (emoji-datasource 16.0.0's emoji.json,
# MIT; `python -m bench.policy_prompts subjects EMOJI_JSON` writes it): what a studio asks for
# every day, so benign neighbours of every concept.
BENIGN_SUBJECTS_FILE = Path(__file__).with_name("benign_subjects.txt")


def benign_anchors() -> tuple[str, ...]:
    subjects = [line.strip() for line in BENIGN_SUBJECTS_FILE.read_text().splitlines() if line.strip()]
    return (*BENIGN_EXEMPLARS, *subjects)


def anchors_sha256(anchors: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(anchors).encode()).hexdigest()
_CLAUSES = re.compile(r"[,;:.!?()\[\]\n]+")

Encode = Callable[[list[str]], np.ndarray]  # texts -> [N, D] unit vectors


@dataclass(frozen=True)
class Calibration:
    text_encoder_sha256: str
    thresholds: dict[str, float]
    anchors: np.ndarray | None = None  # the anchors' states, when they are of today's anchor texts

    @classmethod
    def read(cls, path: Path = THRESHOLDS_FILE, anchors_path: Path = ANCHORS_FILE) -> Calibration:
        data = json.loads(Path(path).read_text())
        anchors = None
        if data.get("anchors_sha256") == anchors_sha256(benign_anchors()) and Path(anchors_path).is_file():
            anchors = np.load(anchors_path, allow_pickle=False).astype(np.float32)
        return cls(data["text_encoder_sha256"], {k: float(v) for k, v in data["thresholds"].items()}, anchors)


# Clauses whose scores a gateway keeps: encoding is most of a Submit's own cost, and studios send
# the same prompts again and again (other seeds, re-runs, variants sharing clauses).
STATES_CACHE_SIZE = 4096


class StatesCache:
    """`encode` with the states of the last `size` texts kept (least recently used out); thread-safe,
    and a batch encodes only the texts it has not seen, in one call."""

    def __init__(self, encode: Encode, size: int):
        self.encode, self.size = encode, size
        self._kept: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            found = {t: self._kept[t] for t in texts if t in self._kept}
            for t in found:
                self._kept.move_to_end(t)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            fresh = {t: row.copy() for t, row in zip(missing, self.encode(missing), strict=True)}
            found |= fresh
            with self._lock:
                self._kept.update(fresh)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return np.stack([found[t] for t in texts])


def clauses(text: str) -> list[str]:
    """The prompt and, when it has several, each clause."""
    parts = [p.strip() for p in _CLAUSES.split(text) if p.strip()]
    whole = " ".join(text.split())
    return [whole] + [p for p in parts if p != whole] if len(parts) > 1 else [whole]


class SemanticMatcher:
    def __init__(self, encode: Encode, thresholds: dict[str, float], anchors: np.ndarray | None = None,
                 cache_size: int = STATES_CACHE_SIZE):
        """`anchors`: the benign anchors' states by this encoder (encoded here when None)."""
        self.encode = encode
        self.thresholds = dict(thresholds)
        self.concepts = [c for c in EXEMPLARS if c in self.thresholds]
        rows = [(c, e) for c in self.concepts for e in EXEMPLARS[c]]
        if anchors is None:
            anchors = encode(list(benign_anchors()))
        owner = np.array([self.concepts.index(c) for c, _ in rows] + [len(self.concepts)] * len(anchors))
        self._of_concept = [owner == k for k in range(len(self.concepts))]
        self._benign = owner == len(self.concepts)
        self._exemplars = np.concatenate([encode([e for _, e in rows]), anchors])
        # A new clause's encoding and its product with the exemplars run once, in a call shared with
        # the clauses of concurrent Submits; a kept clause runs neither (docs/ARCHITECTURE.md,
        # "Content policies": one BLAS product per Submit, from 50 threads at once, took 100 ms each).
        self.batched = BatchedEncode(self._clause_scores)
        self._kept = StatesCache(self.batched, cache_size)

    def _clause_scores(self, pieces: list[str]) -> np.ndarray:
        """[len(pieces), len(self.concepts)]: each clause's best cosine per concept, -1 where it is
        closer to a benign neighbour than to the concept."""
        sims = self.encode(pieces) @ self._exemplars.T  # [pieces, exemplars]
        per_concept = np.full((len(pieces), len(self.concepts)), -1.0, dtype=np.float32)
        benign = sims[:, self._benign].max(axis=1)
        for k, of_concept in enumerate(self._of_concept):
            best = sims[:, of_concept].max(axis=1)
            per_concept[:, k] = np.where(best > benign, best, -1.0)
        return per_concept

    def scores(self, texts: list[str]) -> np.ndarray:
        """[len(texts), len(self.concepts)]: each text's best cosine per concept over its clauses,
        -1 where its clause is closer to a benign neighbour than to the concept."""
        pieces: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(texts):
            for c in clauses(t) or [""]:
                pieces.append(c)
                owner.append(i)
        out = np.full((len(texts), len(self.concepts)), -1.0, dtype=np.float32)
        np.maximum.at(out, np.array(owner), self._kept(pieces))
        return out

    def matches(self, texts: list[str], among: Iterable[str]) -> list[str | None]:
        """Per text, the wanted concept it comes closest to past its threshold (None: none)."""
        wanted = [k for k, c in enumerate(self.concepts) if c in set(among)]
        if not texts or not wanted:
            return [None] * len(texts)
        scores = self.scores(texts)
        out: list[str | None] = []
        for row in scores:
            margins = [(row[k] - self.thresholds[self.concepts[k]], k) for k in wanted]
            best, k = max(margins)
            out.append(self.concepts[k] if best >= 0 else None)
        return out
