"""diffusion/training/ship_emoji.sh end to end on a tiny model: a run trained on a packaged
model's VAE becomes the next version, evaluated against its quarter and exported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from atelier_cli.main import main as atelier
from diffusion.data.build import build_emoji, write_dataset
from diffusion.data.sources import SOURCES
from diffusion.nets.config import UNetConfig, VAEConfig
from diffusion.training.common import TrainConfig
from diffusion.training.unet_trainer import train_unet
from diffusion.training.vae_trainer import train_vae
from repository.reader import ModelRepository

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "diffusion" / "training" / "ship_emoji.sh"


def test_ship_script_packages_evaluates_and_exports_the_next_version(emoji_fixture, tmp_path, fake_text):
    data = write_dataset(build_emoji(emoji_fixture, size=16, validation_fraction=0.3), tmp_path / "data", "emoji-16",
                         SOURCES)["npz"]
    classifier = tmp_path / "classifier"
    assert atelier(["eval", "classifier", "--data", str(data), "--out", str(classifier), "--epochs", "1"]) == 0
    # Version 1: its own VAE and a UNet (the fake text encoder is enough for what ships as v1 here).
    cfg = TrainConfig(steps=2, batch_size=4, warmup=1, threads=1, sample_every=10_000, checkpoint_minutes=1e9,
                      tensorboard=False)
    run1 = tmp_path / "run1"
    train_vae(data, run1 / "vae", VAEConfig(channels=(8, 16, 16), groups=8), cfg)
    train_unet(data, run1 / "vae", run1 / "unet", UNetConfig(channels=(32, 64), num_res_blocks=1, embed_dim=32,
                                                              heads=2), cfg)
    models = tmp_path / "models"
    assert atelier(["train", "package", "--root", str(run1), "--out", str(models / "tiny" / "1")]) == 0
    # Version 2's run, in a subprocess as a studio runs it: the real MiniLM token states.
    run2 = tmp_path / "run2"
    env = dict(os.environ, HF_HUB_OFFLINE="1", DATA=str(data.with_suffix("")), MODELS=str(models), NAME="tiny",
               CLASSIFIER=str(classifier), PY=sys.executable)
    subprocess.run([sys.executable, "-m", "atelier_cli", "train", "unet", "--data", str(data), "--vae-from",
                    str(models / "tiny" / "1"), "--run-dir", str(run2 / "unet"), "--channels", "32", "64",
                    "--num-res-blocks", "1", "--embed-dim", "32", "--heads", "2", "--steps", "4", "--batch-size", "4",
                    "--threads", "1", "--sample-every", "1000", "--keep-at", "0.25", "0.5"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    (run2 / "notes.md").write_text("## Why version 2\n\nA longer run.\n")

    done = subprocess.run(["bash", str(SCRIPT), str(run2), "2"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    out = models / "tiny" / "2"
    report = json.loads((out / "eval.json").read_text())
    assert report["model"]["label"] == "tiny/2" and report["generation"]["guidance"] == 5.0
    table = (out / "EVAL.md").read_text()
    assert "generated (quarter)" in table and "generated (half)" in table
    assert json.loads((run2 / "eval-quarter" / "eval.json").read_text())["model"]["step"] == 1
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# tiny, version 2") and "A longer run." in card
    version = ModelRepository(models).open("tiny", "2")
    version.verify()
    listed = set(version.manifest.files)
    assert {"unet.onnx", "vae_decoder.onnx", "EVAL.md", "contact_sheet.png", "DATA_CARD.md",
            "unet_ema.safetensors"} <= listed
    assert ModelRepository(models).latest("tiny") == "2"
