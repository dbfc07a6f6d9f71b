"""The prompt check's cache of pooled states: the same scores as encoding every time, each text
encoded once while it is kept, least recently used out first."""

from __future__ import annotations

import hashlib

import numpy as np

from services.common.policy.semantic import SemanticMatcher, StatesCache


class CountingEncoder:
    """A deterministic text -> unit vector map that records every text it was asked to encode."""

    def __init__(self, dim: int = 16):
        self.dim, self.seen = dim, []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=self.dim)
                for t in texts]
        out = np.array(rows, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_cached_states_equal_fresh_ones_and_each_text_is_encoded_once():
    encoder = CountingEncoder()
    cache = StatesCache(encoder, size=8)
    first = cache(["a sword", "a red apple", "a sword"])
    assert encoder.seen == ["a sword", "a red apple"]  # one call, each new text once
    again = cache(["a red apple", "a sword", "a blue car"])
    assert encoder.seen == ["a sword", "a red apple", "a blue car"]
    np.testing.assert_array_equal(again[:2], first[[1, 0]])
    np.testing.assert_array_equal(again, CountingEncoder()(["a red apple", "a sword", "a blue car"]))


def test_the_least_recently_used_text_goes_first():
    encoder = CountingEncoder()
    cache = StatesCache(encoder, size=2)
    cache(["a"])
    cache(["b"])
    cache(["a"])  # a is now the most recent
    cache(["c"])  # b goes
    encoder.seen.clear()
    cache(["a", "c"])
    assert encoder.seen == []
    cache(["b"])
    assert encoder.seen == ["b"]


def test_a_matcher_scores_the_same_with_and_without_its_cache():
    thresholds = {"weapons": 0.2, "alcohol": 0.2}
    anchors = CountingEncoder()(["a cat", "a tree"])
    cached = SemanticMatcher(CountingEncoder(), thresholds, anchors)
    uncached = SemanticMatcher(CountingEncoder(), thresholds, anchors, cache_size=0)
    prompts = ["a rifle, on a table", "a pint of beer", "a cat"]
    np.testing.assert_array_equal(cached.scores(prompts), uncached.scores(prompts))
    np.testing.assert_array_equal(cached.scores(prompts), uncached.scores(prompts))  # now from the cache
