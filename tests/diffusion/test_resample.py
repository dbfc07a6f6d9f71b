"""diffusion.resample: the one bicubic upsampling of the super-resolution contract, and the
downsampling of the base model's data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from diffusion.resample import downsample, downsample_torch, upsample, upsample_matrix, upsample_torch


def test_matrix_rows_sum_to_one_and_constant_images_stay_constant():
    for n in (1, 2, 5, 32):
        a = upsample_matrix(n, 4)
        assert a.shape == (4 * n, n) and a.dtype == np.float32
        np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(upsample(np.full((4, 7, 9), 0.3, np.float32), 4), 0.3, atol=1e-6)


def test_upsample_is_torch_bicubic_half_pixel_clamped():
    x = np.random.default_rng(0).standard_normal((2, 4, 12, 20)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), scale_factor=4, mode="bicubic", align_corners=False).numpy()
    np.testing.assert_allclose(upsample(x, 4), ref, atol=2e-6)


def test_upsample_is_close_to_pil_bicubic():
    """PIL's bicubic uses Keys a = -0.5 (ours, torch's and OpenCV's: -0.75): close on images with
    some smoothness, not equal (on white noise they differ by ~1.5 % of the range)."""
    coarse = np.random.default_rng(1).uniform(0, 255, (6, 6)).astype(np.float32)
    x = np.asarray(Image.fromarray(coarse, mode="F").resize((16, 16), Image.Resampling.BILINEAR))
    pil = np.asarray(Image.fromarray(x, mode="F").resize((64, 64), Image.Resampling.BICUBIC))
    assert np.abs(upsample(x, 4) - pil).mean() < 1.5   # of 255


def test_numpy_and_torch_twins_agree():
    x = np.random.default_rng(2).standard_normal((3, 4, 8, 6)).astype(np.float32)
    np.testing.assert_allclose(upsample_torch(torch.from_numpy(x), 4).numpy(), upsample(x, 4), rtol=0, atol=1e-6)
    np.testing.assert_allclose(downsample_torch(torch.from_numpy(x), 2).numpy(), downsample(x, 2), atol=1e-6)


def test_downsample_is_the_base_datas_box_filter():
    """The 32² data were made by PIL's BOX filter on premultiplied RGBA (diffusion.data.images)."""
    rng = np.random.default_rng(3)
    alpha = rng.integers(0, 256, (32, 32, 1))
    rgb = (rng.uniform(0, 1, (32, 32, 3)) * alpha).astype(np.uint8)
    pm = np.concatenate([rgb, alpha.astype(np.uint8)], axis=-1)
    pil = np.asarray(Image.fromarray(pm, "RGBa").resize((8, 8), Image.Resampling.BOX), dtype=np.float32)
    ours = downsample(pm.transpose(2, 0, 1).astype(np.float32), 4).transpose(1, 2, 0)
    assert np.abs(np.rint(ours) - pil).max() <= 1.0


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="multiple"):
        downsample(np.zeros((4, 10, 8), np.float32), 4)
    with pytest.raises(ValueError, match="n >= 1"):
        upsample_matrix(0, 4)
