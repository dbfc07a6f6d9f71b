"""`atelier eval classifier` and `atelier eval model` through the command line."""

from __future__ import annotations

import json

import pytest

from atelier_cli.main import main
from diffusion.data import save_dataset
from diffusion.data.dataset import VALIDATION
from diffusion.defaults import DEFAULT_GUIDANCE
from tests.evaluation.tiny_model import write_tiny_runs


@pytest.mark.slow
def test_eval_cli_end_to_end(fixture_dataset, tmp_path):
    """Trains a classifier for one epoch, then evaluates a tiny random model with the real MiniLM encoder."""
    data = save_dataset(fixture_dataset, tmp_path / "data.npz")
    clf = tmp_path / "classifier"
    assert main(["eval", "classifier", "--data", str(data), "--out", str(clf), "--epochs", "1"]) == 0
    held_out = int((fixture_dataset.split == VALIDATION).sum())
    assert json.loads((clf / "metrics.json").read_text())["validation"]["images"] == held_out > 0
    run = write_tiny_runs(tmp_path / "runs", fixture_dataset.styles, fixture_dataset.images.shape[1],
                          context_dim=384, max_length=24)
    out = tmp_path / "eval"
    argv = ["eval", "model", str(run), "--out", str(out), "--data", str(data), "--classifier", str(clf),
            "--split", "train", "--limit", "8", "--steps", "2", "--contact-seeds", "0", "--label", "tiny"]
    assert main(argv) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["model"]["label"] == "tiny" and report["model"]["step"] == 7
    assert report["generation"]["images"] == 8 and report["generation"]["steps"] == 2
    assert report["generation"]["guidance"] == DEFAULT_GUIDANCE  # a checkpoint: the packager's default
    assert {"eval.json", "EVAL.md", "eval_samples.png", "contact_sheet.png"} <= {p.name for p in out.iterdir()}
    # A second run can carry the first as a baseline column.
    assert main(argv[:4] + [str(tmp_path / "eval2"), *argv[5:], "--no-contact-sheet",
                            "--baseline", f"first={out / 'eval.json'}"]) == 0
    assert "generated (first)" in (tmp_path / "eval2" / "EVAL.md").read_text()
