"""The model bench.gateway runs by default: the newest shipped version of the default model.

Latency through the service depends on the networks' shapes, not on what the weights learned;
benchmarking what ships keeps the figures true to what a studio runs."""

from __future__ import annotations

from pathlib import Path

from repository.reader import ModelRepository

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = REPO_ROOT / "models"
NAME = "atelier-emoji"


def default_repository(log=print) -> tuple[Path, str, str]:
    """(model repository, model name, where it came from)."""
    version = ModelRepository(SHIPPED).latest(NAME)
    return SHIPPED, NAME, f"shipped models/{NAME}/{version}"
