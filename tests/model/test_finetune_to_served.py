"""docs/MODEL.md's path from `atelier train finetune` to a served model, on a tiny model:
finetune on a folder of images (a new style) -> `train package --root RUN` (the finetune run
folder itself, its VAE the base model's) -> `atelier export` -> the repository reader opens it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from atelier_cli.main import main as atelier
from repository.reader import ModelRepository
from tests.model.test_package import first_version  # noqa: F401 - the tiny base model, packaged

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXPORT_SECONDS = 600


def _studio_folder(folder: Path) -> Path:
    """Eight captioned 16x16 sprites: a studio's own art, one new style."""
    folder.mkdir(parents=True)
    colours = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 180, 30)]
    for i in range(8):
        image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
        image.paste(colours[i % 4] + (255,), (2 + i % 3, 2, 13, 13 - i % 2))
        image.save(folder / f"sprite{i}.png")
        (folder / f"sprite{i}.txt").write_text(f"a {['red', 'green', 'blue', 'yellow'][i % 4]} block")
    return folder


def test_a_finetune_run_packages_exports_and_opens(first_version, tmp_path, fake_text):  # noqa: F811
    sprites = _studio_folder(tmp_path / "mystyle")
    assert atelier(["data", "folder", str(sprites), "--size", "16", "--out", str(tmp_path / "data")]) == 0
    data = tmp_path / "data" / "folder-mystyle-16.npz"
    run = tmp_path / "ft"
    assert atelier(["train", "finetune", "--model", str(first_version), "--data", str(data), "--run-dir", str(run),
                    "--steps", "2", "--batch-size", "4", "--warmup", "1", "--threads", "1",
                    "--sample-every", "1000"]) == 0

    models = tmp_path / "models"
    out = run / "package"
    assert atelier(["train", "package", "--root", str(run), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["styles"][-1] == "mystyle"
    assert config["provenance"]["vae_from"]["model"] == str(first_version)
    assert (out / "vae_ema.safetensors").read_bytes() == (first_version / "vae_ema.safetensors").read_bytes()

    # As docs/MODEL.md runs it: a fresh process with the real text encoder, offline.
    done = subprocess.run([sys.executable, "-m", "atelier_cli", "export", str(out), "--name", "tiny-mystyle",
                           "--version", "1", "--out", str(models), "--include-source"],
                          cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True,
                          timeout=EXPORT_SECONDS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    version = ModelRepository(models).open("tiny-mystyle", "1")
    version.verify()
    assert "mystyle" in version.manifest.styles
    assert {"unet.onnx", "vae_decoder.onnx", "text_encoder.onnx", "unet_ema.safetensors",
            "MODEL_CARD.md"} <= set(version.manifest.files)


def test_package_refuses_a_unet_run_whose_vae_is_not_a_packaged_model(tmp_path):
    run = tmp_path / "ft"
    (run / "checkpoints").mkdir(parents=True)
    (run / "model_config.json").write_text("{}")
    (run / "unet_ema.safetensors").write_bytes(b"")
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"vae_run": str(tmp_path / "gone")}))
    with pytest.raises(SystemExit, match="VAE is not a packaged model's .*; pass --vae-from MODEL"):
        atelier(["train", "package", "--root", str(run), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
