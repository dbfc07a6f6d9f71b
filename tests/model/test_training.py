"""Tiny VAE and UNet on the fixture: loss falls, save -> load is bit-exact, resume = uninterrupted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffusion.nets.config import UNetConfig, VAEConfig
from diffusion.nets.vae import VAE
from diffusion.training.checkpoint import load_checkpoint
from diffusion.training.common import TrainConfig
from diffusion.training.latents import load_vae
from diffusion.training.unet_trainer import train_unet
from diffusion.training.vae_trainer import train_vae

TINY_VAE = VAEConfig(channels=(8, 16, 16), groups=8)
TINY_UNET = UNetConfig(channels=(16, 32), num_res_blocks=1, embed_dim=32, heads=2, groups=8)


def cfg(**kw) -> TrainConfig:
    base = dict(steps=30, batch_size=8, lr=3e-3, warmup=2, ema_decay=0.9, bf16=False, threads=1,
                sample_every=10_000, checkpoint_minutes=1e9, tensorboard=False, log_every=1)
    return TrainConfig(**{**base, **kw})


def test_vae_loss_falls_and_weights_reload_bit_exact(tiny_dataset, tmp_path):
    s = train_vae(tiny_dataset, tmp_path / "vae", TINY_VAE, cfg(steps=40))
    assert np.mean(s["losses"][-5:]) < 0.7 * np.mean(s["losses"][:5])
    vae = load_vae(tmp_path / "vae")
    again = VAE(TINY_VAE)
    again.load_state_dict(load_file(str(tmp_path / "vae" / "vae_ema.safetensors")))
    z = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        assert torch.equal(vae.decode(z), again.eval().decode(z))


def test_vae_resume_continues_the_same_run(tiny_dataset, tmp_path):
    full = train_vae(tiny_dataset, tmp_path / "full", TINY_VAE, cfg(steps=6))
    first = train_vae(tiny_dataset, tmp_path / "split", TINY_VAE, cfg(steps=6), stop_at=3)
    rest = train_vae(tiny_dataset, tmp_path / "split", TINY_VAE, cfg(steps=6))
    assert rest["start"] == 3
    assert first["losses"] + rest["losses"] == full["losses"]
    a, _ = load_checkpoint(tmp_path / "full" / "checkpoints" / "latest.safetensors")
    b, _ = load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.safetensors")
    for group in ("model", "ema", "opt"):
        assert a[group].keys() == b[group].keys()
        assert all(torch.equal(a[group][k], b[group][k]) for k in a[group])


def test_unet_loss_falls_resume_and_reload(tiny_dataset, tmp_path, fake_text):
    train_vae(tiny_dataset, tmp_path / "vae", TINY_VAE, cfg(steps=10))
    unet = UNetConfig(**TINY_UNET.to_dict())
    s = train_unet(tiny_dataset, tmp_path / "vae", tmp_path / "unet", unet, cfg(steps=60, batch_size=16))
    assert np.mean(s["losses"][-10:]) < 0.95 * np.mean(s["losses"][:10])  # EDM loss starts at ~1

    full = train_unet(tiny_dataset, tmp_path / "vae", tmp_path / "u_full", UNetConfig(**TINY_UNET.to_dict()),
                      cfg(steps=6))
    first = train_unet(tiny_dataset, tmp_path / "vae", tmp_path / "u_split", UNetConfig(**TINY_UNET.to_dict()),
                       cfg(steps=6), stop_at=2)
    rest = train_unet(tiny_dataset, tmp_path / "vae", tmp_path / "u_split", UNetConfig(**TINY_UNET.to_dict()),
                      cfg(steps=6))
    assert first["losses"] + rest["losses"] == full["losses"]

    # save -> load reproduces the denoiser's outputs bit for bit
    from diffusion.nets.config import EDMConfig
    from diffusion.training.unet_trainer import build_denoiser

    groups, meta = load_checkpoint(tmp_path / "u_full" / "checkpoints" / "latest.safetensors")
    d1 = build_denoiser(unet, EDMConfig())
    d1.load_state_dict(groups["ema"])
    d2 = build_denoiser(unet, EDMConfig(), seed=123)
    d2.net.load_state_dict(load_file(str(tmp_path / "u_full" / "unet_ema.safetensors")))
    x, sigma = torch.randn(2, 4, 4, 4), torch.tensor([0.5, 3.0])
    args = (torch.randn(2, 24, 384), torch.ones(2, 24), torch.tensor([1, 2]))
    with torch.no_grad():
        assert torch.equal(d1.eval()(x, sigma, *args), d2.eval()(x, sigma, *args))
    assert meta["kind"] == "unet" and meta["step"] == 6


def test_kept_checkpoint_is_the_run_stopped_at_that_fraction(tiny_dataset, tmp_path, fake_text):
    train_vae(tiny_dataset, tmp_path / "vae", TINY_VAE, cfg(steps=4))
    kept_run = tmp_path / "kept"
    train_unet(tiny_dataset, tmp_path / "vae", kept_run, UNetConfig(**TINY_UNET.to_dict()),
               cfg(steps=8, keep_at=(0.25, 0.5)))
    train_unet(tiny_dataset, tmp_path / "vae", tmp_path / "stopped", UNetConfig(**TINY_UNET.to_dict()),
               cfg(steps=8), stop_at=2)
    files = sorted(p.name for p in (kept_run / "checkpoints").glob("step_*.safetensors"))
    assert files == ["step_000002.safetensors", "step_000004.safetensors"]
    kept, meta = load_checkpoint(kept_run / "checkpoints" / "step_000002.safetensors")
    stopped, _ = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "latest.safetensors")
    assert (meta["step"], meta["kept_fraction"], meta["planned_steps"]) == (2, 0.25, 8)
    for group in ("model", "ema", "opt"):
        assert kept[group].keys() == stopped[group].keys()
        assert all(torch.equal(kept[group][k], stopped[group][k]) for k in kept[group])
    # The run went on past the kept steps without touching them.
    _, latest = load_checkpoint(kept_run / "checkpoints" / "latest.safetensors")
    assert latest["step"] == 8 and "kept_fraction" not in latest


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.25])
def test_keep_at_refuses_fractions_outside_the_run(fraction):
    with pytest.raises(ValueError, match="keep_at"):
        cfg(keep_at=(fraction,))


def test_unet_trains_on_a_shipped_models_vae(tiny_dataset, tmp_path, fake_text):
    """`atelier train unet --vae-from MODEL`: the shipped VAE, its latent scale and shift and its
    style ids are reused as they are, so the new UNet is a drop-in successor."""
    from atelier_cli.main import main as atelier
    from diffusion.nets.config import LatentConfig, ModelConfig

    train_vae(tiny_dataset, tmp_path / "vae", TINY_VAE, cfg(steps=4))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "vae_ema.safetensors").write_bytes((tmp_path / "vae" / "vae_ema.safetensors").read_bytes())
    latent = LatentConfig(image_size=16, latent_size=4, latent_channels=4, scale=0.75, shift=0.125)
    styles = ("none", "twemoji", "noto", "fluent-flat")  # not the dataset's order: the model's ids win
    ModelConfig(vae=TINY_VAE.to_dict(), unet=TINY_UNET.to_dict(), latent=latent.to_dict(), styles=styles).save(
        shipped / "config.json")
    assert torch.equal(load_vae(shipped).decode(torch.ones(1, 4, 4, 4)),
                       load_vae(tmp_path / "vae").decode(torch.ones(1, 4, 4, 4)))

    run = tmp_path / "unet"
    assert atelier(["train", "unet", "--data", str(tiny_dataset), "--vae-from", str(shipped), "--run-dir", str(run),
                    "--channels", "32", "64", "--num-res-blocks", "1", "--embed-dim", "32", "--heads", "2",
                    "--steps", "2", "--batch-size", "4", "--threads", "1", "--sample-every", "1000"]) == 0
    assert LatentConfig.load(run / "latents.json") == latent
    trained = ModelConfig.load(run / "model_config.json")
    assert tuple(trained.styles) == styles and trained.vae == TINY_VAE.to_dict()
    _, meta = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    assert meta["vae_run"] == str(shipped)


def test_load_vae_names_a_folder_that_is_neither(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a VAE run"):
        load_vae(tmp_path)
