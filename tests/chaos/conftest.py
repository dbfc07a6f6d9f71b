"""One tiny exported model (ONNX Runtime, real files and hashes) for every chaos test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    from bench.tiny_models import tiny_repository

    return tiny_repository(tmp_path_factory.mktemp("chaos-model"))
