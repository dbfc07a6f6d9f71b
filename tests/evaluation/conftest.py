"""Shared fixtures of the evaluation tests: the tiny emoji dataset built from tests/fixtures/emoji."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffusion.data.build import build_emoji

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "emoji"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Tests share the machine with training runs; one thread keeps them polite and repeatable.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def fixture_dataset():
    """About 40 images: a dozen subjects in three styles, 16x16, a fifth of the subjects held out."""
    return build_emoji(FIXTURE, size=16, validation_fraction=0.2)
