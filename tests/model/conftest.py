"""Fixtures for the model tests: a tiny emoji dataset built from tests/fixtures/emoji, and a
stand-in text encoder so the tests do not load MiniLM."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "emoji"


class FakeTextEncoder:
    """Deterministic token states from a hash of each caption: same shapes as MiniLM's."""

    def __init__(self, max_length: int = 24, directory=None):
        self.max_length = max_length

    def __call__(self, captions, batch_size: int = 256):
        states = np.zeros((len(captions), self.max_length, 384), dtype=np.float32)
        mask = np.zeros((len(captions), self.max_length), dtype=np.float32)
        for i, c in enumerate(captions):
            seed = int.from_bytes(hashlib.sha256(c.encode()).digest()[:4], "big")
            n = min(self.max_length, 2 + len(c.split()))
            states[i, :n] = np.random.default_rng(seed).standard_normal((n, 384))
            mask[i, :n] = 1.0
        return states, mask


@pytest.fixture
def fake_text(monkeypatch):
    import diffusion.nets.text as text

    monkeypatch.setattr(text, "TextEncoder", FakeTextEncoder)
    return FakeTextEncoder


@pytest.fixture(scope="session")
def emoji_fixture() -> Path:
    return FIXTURE


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from diffusion.data.build import build_emoji
    from diffusion.data.dataset import save_dataset

    ds = build_emoji(FIXTURE, size=16, validation_fraction=0.2)
    return save_dataset(ds, tmp_path_factory.mktemp("data") / "tiny.npz")
