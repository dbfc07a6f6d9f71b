"""The x4 upscalers: network shapes at any size, the degradations' premultiplied invariant, and
the trainer's bit-exact resume (docs/MODEL.md, "The upscaler")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffusion.data.dataset import ImageDataset, save_dataset
from diffusion.nets.upscaler import UpscalerConfig, build_upscaler
from diffusion.training.checkpoint import load_checkpoint
from diffusion.training.common import TrainConfig
from diffusion.training.degradations import (
    DegradationConfig,
    augment,
    degrade,
    gaussian_blur,
    jpeg_pool,
    jpeg_roundtrip,
    sample_aug_level,
)
from diffusion.training.upscale_trainer import (
    EXPORTED,
    WEIGHTS,
    UpscaleTrainOptions,
    export_run,
    salvage_run,
    train_upscaler,
    upscale_torch,
)
from diffusion.upscale import UpscaleParams, upscale_fast

TINY = dict(width=(8, 16), num_blocks=(1, 1), embed_dim=16)


def premultiplied_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Blobby premultiplied RGBA uint8 [n, size, size, 4] with transparent surroundings."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.zeros((n, size, size, 4), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.4)
        alpha = np.clip((r - np.hypot(yy - cy, xx - cx)) * 8 * size / 16, 0, 1)
        colour = rng.uniform(0, 1, 3) * (0.7 + 0.3 * rng.uniform(0, 1, (size, size, 1)))
        out[i, ..., 3] = np.rint(alpha * 255)
        out[i, ..., :3] = np.rint(colour * alpha[..., None] * 255)
    return out


@pytest.mark.parametrize("arch", ["diffusion", "cnn"])
@pytest.mark.parametrize("hw", [(8, 8), (16, 24), (40, 32)])
def test_nets_keep_any_size_that_is_a_multiple(arch, hw):
    cfg = UpscalerConfig(arch=arch, **TINY)
    assert cfg.size_multiple == 8
    net = build_upscaler(cfg).eval()
    x = torch.randn(2, 4, *hw)
    with torch.no_grad():
        out = net(x, torch.tensor([0.5, 0.01]), x, torch.tensor([0.0, 0.1])) if arch == "diffusion" else net(x)
    assert out.shape == x.shape and out.dtype == torch.float32


def test_untrained_nets_start_at_bicubic_and_config_round_trips():
    """Zero-initialised output convs: the CNN's residual is 0 and the diffusion x0 is c_skip * x."""
    cfg = UpscalerConfig(**TINY)
    assert UpscalerConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    x = torch.randn(1, 4, 16, 16)
    assert torch.equal(build_upscaler(UpscalerConfig(arch="cnn", **TINY))(x), torch.zeros_like(x))
    sigma = torch.tensor([0.3])
    d = build_upscaler(cfg)(x, sigma, x, torch.zeros(1))
    c_skip = cfg.sigma_data**2 / (0.3**2 + cfg.sigma_data**2)
    torch.testing.assert_close(d, c_skip * x)
    with pytest.raises(ValueError, match="arch"):
        UpscalerConfig(arch="gan")


def test_degradations_keep_rgb_at_most_alpha():
    hr_u8 = premultiplied_images(16, 32)
    hr = torch.from_numpy(hr_u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    cfg = DegradationConfig(p_blur=0.5, p_noise=0.5, p_jpeg=0.5)
    pool = torch.from_numpy(jpeg_pool(hr_u8, cfg, seed=0)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    g = torch.Generator().manual_seed(0)
    lr = degrade(hr, pool, cfg, g)
    assert lr.shape == (16, 4, 8, 8)
    assert (lr[:, :3] <= lr[:, 3:4]).all() and lr.min() >= -1.0 and lr.max() <= 1.0
    blurred = gaussian_blur(hr, torch.full((16,), 1.2))
    assert (blurred[:, :3] <= blurred[:, 3:4] + 1e-6).all()
    jp = jpeg_roundtrip(hr_u8[0, ::4, ::4], 40)
    assert (jp[..., :3] <= jp[..., 3:4]).all() and np.array_equal(jp[..., 3], hr_u8[0, ::4, ::4, 3])


def test_degradations_repeat_for_the_same_generator_state():
    hr = torch.from_numpy(premultiplied_images(4, 16)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    a = degrade(hr, None, DegradationConfig(), torch.Generator().manual_seed(5))
    b = degrade(hr, None, DegradationConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_aug_levels_have_mass_at_zero_and_stay_in_range():
    lv = sample_aug_level(4000, 0.2, 0.3, torch.Generator().manual_seed(0))
    assert 0.25 < float((lv == 0).float().mean()) < 0.35 and float(lv.max()) <= 0.2
    lr = torch.zeros(2, 4, 4, 4)
    assert torch.equal(augment(lr, torch.zeros(2), torch.Generator().manual_seed(0)), lr)


@pytest.fixture
def tiny_hires(tmp_path):
    n = 12
    ds = ImageDataset(images=premultiplied_images(n, 16), captions=np.asarray([f"blob {i}" for i in range(n)]),
                      emoji_ids=np.asarray([f"id{i}" for i in range(n)]), style_ids=np.ones(n, np.int64),
                      category_ids=np.zeros(n, np.int64), split=np.asarray([0] * 10 + [1] * 2, np.uint8),
                      styles=["none", "blobs"], categories=["unknown"])
    return save_dataset(ds, tmp_path / "blobs-16.npz")


def _cfg(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup=2, threads=1, tensorboard=False, log_every=1,
                       sample_every=1000, checkpoint_minutes=1000.0)


@pytest.mark.parametrize("arch", ["diffusion", "cnn"])
def test_upscale_training_resumes_bit_exactly(tiny_hires, tmp_path, arch):
    opts = UpscaleTrainOptions(crop=8)
    cfg = lambda: UpscalerConfig(arch=arch, **TINY)  # noqa: E731
    full = train_upscaler(tiny_hires, tmp_path / "full", cfg(), _cfg(5), opts=opts, n_val=2)
    first = train_upscaler(tiny_hires, tmp_path / "split", cfg(), _cfg(5), opts=opts, stop_at=2, n_val=2)
    rest = train_upscaler(tiny_hires, tmp_path / "split", cfg(), _cfg(5), opts=opts, n_val=2)
    assert rest["start"] == 2 and first["losses"] + rest["losses"] == full["losses"]
    a, meta = load_checkpoint(tmp_path / "full" / "checkpoints" / "latest.safetensors")
    b, _ = load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.safetensors")
    for group in ("model", "ema", "opt"):
        assert a[group].keys() == b[group].keys()
        assert all(torch.equal(a[group][k], b[group][k]) for k in a[group])
    assert meta["kind"] == f"upscaler-{arch}" and meta["step"] == 5
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert config["arch"] == arch and config["sigma_data"] > 0 and config["size_multiple"] == 8
    out = export_run(tmp_path / "full", tmp_path / "export")
    assert sorted(p.name for p in out) == sorted(n.split("/")[-1].replace("latest", "samples") for n in EXPORTED)


def test_a_failed_run_leaves_its_last_checkpoints_ema(tiny_hires, tmp_path):
    """salvage_run: what a one-shot GPU run leaves if it dies after a checkpoint."""
    from safetensors.torch import load_file

    assert not salvage_run(tmp_path / "nothing", tmp_path / "out0")
    cfg = UpscalerConfig(arch="cnn", **TINY)
    train_upscaler(tiny_hires, tmp_path / "run", cfg, _cfg(5), opts=UpscaleTrainOptions(crop=8), stop_at=2, n_val=2)
    assert salvage_run(tmp_path / "run", tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["salvaged"] and config["summary"]["steps"] == 2
    net = build_upscaler(UpscalerConfig.from_dict(config))
    net.load_state_dict(load_file(str(tmp_path / "out" / WEIGHTS)))


def test_atelier_train_upscale_exports_only_the_model_files(tiny_hires, tmp_path):
    from atelier_cli.main import main as atelier

    rc = atelier(["train", "upscale", "--arch", "diffusion", "--data", str(tiny_hires), "--run-dir",
                  str(tmp_path / "run"), "--export-dir", str(tmp_path / "out"), "--steps", "2", "--batch", "2",
                  "--crop", "8", "--width", "8", "16", "--blocks", "1", "1", "--threads", "1", "--n-val", "2"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "metrics.jsonl", "samples.png", WEIGHTS]
    assert (tmp_path / "run" / "checkpoints" / "latest.safetensors").exists()


def test_training_grid_cnn_path_is_the_served_one():
    """upscale_torch (the trainer's grids and validation numbers) and diffusion.upscale.upscale_fast
    (serving) give the same HR for the CNN: one resample, one clamp."""
    cfg = UpscalerConfig(arch="cnn", **TINY)
    torch.manual_seed(0)
    net = build_upscaler(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    lr = torch.from_numpy(premultiplied_images(2, 16, seed=1)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        ours = upscale_torch(net, lr, cfg).numpy()
        served = upscale_fast(lr.numpy(), lambda up: net(torch.from_numpy(up)).numpy(),
                              UpscaleParams(size_multiple=cfg.size_multiple))
    np.testing.assert_allclose(ours, served, atol=1e-5)
