"""`atelier train package`: a run becomes a model folder; a later UNet reuses a packaged VAE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from atelier_cli.main import main as atelier
from diffusion.nets.config import UNetConfig, VAEConfig
from diffusion.nets.shipped import latest_shipped, load_shipped
from diffusion.training.common import TrainConfig
from diffusion.training.unet_trainer import train_unet
from diffusion.training.vae_trainer import train_vae

TINY_VAE = VAEConfig(channels=(8, 16, 16), groups=8)
UNET_ARGS = ["--channels", "32", "64", "--num-res-blocks", "1", "--embed-dim", "32", "--heads", "2",
             "--steps", "3", "--batch-size", "4", "--threads", "1", "--sample-every", "1000"]


def _cfg(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=4, warmup=1, threads=1, sample_every=10_000,
                       checkpoint_minutes=1e9, tensorboard=False)


@pytest.fixture
def first_version(tiny_dataset, tmp_path, fake_text) -> Path:
    """A run with its own VAE, packaged as models/tiny/1."""
    run = tmp_path / "run1"
    train_vae(tiny_dataset, run / "vae", TINY_VAE, _cfg(3))
    train_unet(tiny_dataset, run / "vae", run / "unet", UNetConfig(channels=(32, 64), num_res_blocks=1,
                                                                    embed_dim=32, heads=2), _cfg(3))
    out = tmp_path / "models" / "tiny" / "1"
    assert atelier(["train", "package", "--root", str(run), "--out", str(out), "--command-line", "run one"]) == 0
    return out


def test_a_new_unet_on_a_packaged_vae_packages_as_the_next_version(first_version, tiny_dataset, tmp_path):
    run = tmp_path / "run2"
    assert atelier(["train", "unet", "--data", str(tiny_dataset), "--vae-from", str(first_version),
                    "--run-dir", str(run / "unet"), *UNET_ARGS]) == 0
    notes = tmp_path / "notes.md"
    notes.write_text("## What changed\n\nLonger training.\n")
    out = first_version.parent / "2"
    assert atelier(["train", "package", "--root", str(run), "--out", str(out), "--vae-from", str(first_version),
                    "--notes", str(notes)]) == 0

    assert (out / "vae_ema.safetensors").read_bytes() == (first_version / "vae_ema.safetensors").read_bytes()
    old, new = (json.loads((v / "config.json").read_text()) for v in (first_version, out))
    assert new["latent"] == old["latent"] and new["vae"] == old["vae"]
    assert new["provenance"]["vae_train"] == old["provenance"]["vae_train"]
    assert new["provenance"]["vae_from"]["model"] == str(first_version)
    assert new["defaults"]["guidance_scale"] == 5.0
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# tiny, version 2\n")
    assert f"VAE (reused from {first_version})" in card and card.rstrip().endswith("Longer training.")
    shipped, first = load_shipped(out), load_shipped(first_version)
    assert list(shipped.config.unet["channels"]) == [32, 64] and shipped.config.unet["embed_dim"] == 32
    # The loaded VAE is version 1's, tensor for tensor.
    vae, vae1 = shipped.vae.state_dict(), first.vae.state_dict()
    assert vae.keys() == vae1.keys() and all(torch.equal(vae[k], vae1[k]) for k in vae)
    assert latest_shipped("tiny", tmp_path / "models") == out


def test_a_vae_the_unet_was_not_trained_on_is_refused_before_anything_is_written(first_version, tiny_dataset,
                                                                                 tmp_path):
    run = tmp_path / "run2"
    assert atelier(["train", "unet", "--data", str(tiny_dataset), "--vae-from", str(first_version),
                    "--run-dir", str(run / "unet"), *UNET_ARGS]) == 0
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((first_version / "config.json").read_text())
    config["latent"]["scale"] *= 1.5
    (other / "config.json").write_text(json.dumps(config))
    (other / "vae_ema.safetensors").write_bytes((first_version / "vae_ema.safetensors").read_bytes())
    out = tmp_path / "models" / "tiny" / "2"
    with pytest.raises(SystemExit, match="latent scale, shift and shape"):
        atelier(["train", "package", "--root", str(run), "--out", str(out), "--vae-from", str(other)])
    assert not out.exists()


def test_packaging_never_overwrites_a_version_unless_asked(first_version, tmp_path):
    before = (first_version / "config.json").read_bytes()
    with pytest.raises(SystemExit, match="already holds a packaged model"):
        atelier(["train", "package", "--root", str(tmp_path / "run1"), "--out", str(first_version)])
    assert (first_version / "config.json").read_bytes() == before
    assert atelier(["train", "package", "--root", str(tmp_path / "run1"), "--out", str(first_version),
                    "--overwrite"]) == 0


def test_packaging_names_a_run_without_a_vae(tmp_path):
    with pytest.raises(SystemExit, match="no finished UNet run"):
        atelier(["train", "package", "--root", str(tmp_path), "--out", str(tmp_path / "out")])


def test_latest_shipped_sorts_versions_as_numbers(tmp_path):
    for v in ("2", "10", "9"):
        (tmp_path / "m" / v).mkdir(parents=True)
        (tmp_path / "m" / v / "config.json").write_text("{}")
    (tmp_path / "m" / "11").mkdir()  # no config.json: not packaged
    assert latest_shipped("m", tmp_path).name == "10"
    with pytest.raises(FileNotFoundError, match="no packaged version of 'nope'"):
        latest_shipped("nope", tmp_path)
