"""The x4 SR sampler (diffusion/upscale.py): seeds, steps, callbacks, tiles, premultiplied output.

The network here is a real one, small and in numpy: two zero-padded 5x5 convolutions with a tanh
between them under EDM preconditioning, so tiles see the same edge effects a trained
convolutional upscaler does. tests/export/test_upscaler_export.py repeats the tiled-vs-whole check
through ONNX Runtime with a tiny exported upscaler.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffusion.noise import normal_rows
from diffusion.resample import upsample
from diffusion.upscale import (
    AUG_STREAM,
    START_STREAM,
    UpscaleParams,
    alpha_clamp,
    axis_tiles,
    axis_weights,
    plan_tiles,
    upscale,
    upscale_fast,
)

PARAMS = UpscaleParams(sigma_min=0.002, sigma_max=1.0, aug_level=0.05, size_multiple=4, tile=16, tile_overlap=4)
WHOLE = UpscaleParams(**{**PARAMS.__dict__, "tile": 256})


def _conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h, wd = x.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], h, wd), np.float32)
    for i in range(k):
        for j in range(k):
            out += np.einsum("bchw,oc->bohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return out


class ConvNet:
    """EDM-preconditioned (Karras et al. 2022, eq. 7) two-layer conv net on concat(r, up)."""

    def __init__(self, seed: int = 0, sigma_data: float = 0.5):
        rng = np.random.default_rng(seed)
        self.w1 = (rng.normal(size=(8, 8, 5, 5)) * 0.1).astype(np.float32)
        self.w2 = (rng.normal(size=(4, 8, 5, 5)) * 0.1).astype(np.float32)
        self.sd = sigma_data
        self.calls: list[tuple[tuple[int, ...], np.ndarray]] = []

    def __call__(self, x, sigma, up, aug):
        assert x.shape == up.shape and sigma.shape == aug.shape == (x.shape[0],)
        self.calls.append((x.shape, np.array(sigma)))
        s = np.asarray(sigma, np.float32)[:, None, None, None]
        c_in, sd2 = 1 / np.sqrt(s**2 + self.sd**2), self.sd**2
        h = np.tanh(_conv(np.concatenate([x * c_in, up], 1), self.w1))
        return sd2 / (s**2 + sd2) * x + s * self.sd / np.sqrt(s**2 + sd2) * _conv(h, self.w2)


def gradient(h: int, w: int, alpha: float = 0.9) -> np.ndarray:
    """A smooth premultiplied RGBA ramp [1, 4, h, w]: any seam would show against it."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a = np.full_like(xx, alpha)
    rgb = [xx * 0.8 - 0.2, yy * 0.6 - 0.1, (xx + yy) * 0.4 - 0.3]
    return np.stack([np.minimum(c, a) for c in rgb] + [a])[None].astype(np.float32)


def sprite(seed: int, h: int = 12, w: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (1, 1, h, w))
    rgb = np.minimum(rng.uniform(-1, 1, (1, 3, h, w)), a)
    return np.concatenate([rgb, a], 1).astype(np.float32)


def test_an_image_upscales_the_same_alone_and_in_a_batch():
    net = ConvNet()
    images = np.concatenate([sprite(1), sprite(2), sprite(3)])
    together = upscale(images, net, PARAMS, steps=4, seeds=[11, 22, 33])
    alone = upscale(images[1:2], net, PARAMS, steps=4, seeds=[22])
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)
    assert not np.allclose(upscale(images[1:2], net, PARAMS, steps=4, seeds=[23]), alone, atol=1e-3)


def test_sr_noise_streams_are_its_own():
    # Base sampling draws streams 0 (initial noise) .. steps (per-step noise); SR never reuses them.
    assert AUG_STREAM >= 1 << 20 and START_STREAM >= 1 << 20 and AUG_STREAM != START_STREAM
    net, image, seed = ConvNet(), sprite(4), 5
    # The chain starts at sigma_max times START_STREAM's noise: with one step the net sees exactly that.
    upscale(image, net, PARAMS, steps=1, seeds=[seed])
    (shape, sigma), = net.calls
    assert sigma.tolist() == [pytest.approx(PARAMS.sigma_max)]
    probe = []
    upscale(image, lambda x, s, u, a: probe.append((x, u)) or np.zeros_like(x), PARAMS, steps=1, seeds=[seed])
    x, up = probe[0]
    np.testing.assert_allclose(x, normal_rows([seed], START_STREAM, shape[1:]) * PARAMS.sigma_max, rtol=1e-6)
    lr_aug = image + PARAMS.aug_level * normal_rows([seed], AUG_STREAM, image.shape[1:])
    np.testing.assert_allclose(up, upsample(lr_aug, 4), atol=1e-5)


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_steps_callbacks_and_karras_sigmas(steps):
    net, seen = ConvNet(), []
    out = upscale(sprite(5, 9, 7), net, PARAMS, steps=steps, seeds=[1],
                  callback=lambda i, total, preview: seen.append((i, total, preview.shape)))
    assert out.shape == (1, 4, 36, 28) and out.dtype == np.float32
    assert seen == [(i, steps, (1, 4, 36, 28)) for i in range(steps)]
    sigmas = [float(s[0]) for _, s in net.calls]
    assert len(sigmas) == steps and sigmas[0] == pytest.approx(PARAMS.sigma_max)
    if steps > 1:
        assert sigmas[-1] == pytest.approx(PARAMS.sigma_min, rel=1e-5)
        assert all(a > b for a, b in zip(sigmas, sigmas[1:], strict=False))


def test_a_callback_that_raises_stops_sampling():
    net = ConvNet()

    def stop(i, total, preview):
        if i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale(sprite(6), net, PARAMS, steps=8, seeds=[1], callback=stop)
    assert len(net.calls) == 2


def test_a_perfect_denoiser_gives_the_true_image_in_one_step():
    params = UpscaleParams(**{**PARAMS.__dict__, "aug_level": 0.0})
    hr = alpha_clamp(np.random.default_rng(0).uniform(-1, 1, (1, 4, 48, 48)).astype(np.float32))
    lr = hr.reshape(1, 4, 12, 4, 12, 4).mean(axis=(3, 5))
    up = upsample(lr, 4)
    out = upscale(lr, lambda x, s, u, a: np.broadcast_to(hr - up, x.shape).copy() if x.shape == up.shape
                  else pytest.fail("untiled input expected"), params, steps=1, seeds=[0])
    np.testing.assert_allclose(out, hr, atol=1e-5)


def test_output_is_premultiplied_and_in_range():
    wild = lambda x, s, u, a: np.random.default_rng(0).normal(0, 3, x.shape).astype(np.float32)  # noqa: E731
    out = upscale(sprite(7), wild, PARAMS, steps=2, seeds=[9])
    assert out.min() >= -1 and out.max() <= 1
    assert (out[:, :3] <= out[:, 3:4]).all()
    fast = upscale_fast(sprite(7), lambda u: np.full_like(u, 0.7), PARAMS)
    assert (fast[:, :3] <= fast[:, 3:4]).all() and fast.max() <= 1


def test_fast_path_is_bicubic_plus_its_residual():
    image = sprite(8, 10, 6)
    np.testing.assert_allclose(upscale_fast(image, np.zeros_like, PARAMS), alpha_clamp(upsample(image, 4)),
                               atol=1e-6)


@pytest.mark.parametrize(("n", "tile", "overlap", "align"),
                         [(160, 64, 16, 4), (144, 64, 16, 16), (64, 64, 16, 4), (400, 64, 16, 8), (68, 64, 8, 4),
                          (1008, 256, 32, 16)])
def test_blend_weights_sum_to_one_and_tiles_cover(n, tile, overlap, align):
    starts = axis_tiles(n, tile, overlap, align)
    size = min(n, tile)
    assert starts[0] == 0 and starts[-1] + size == n and all(s % align == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))
    weights = axis_weights(n, starts, size, overlap)
    total = np.zeros(n)
    for k, s in enumerate(starts):
        total[s:s + size] += weights[k]
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert (weights >= 0).all()


def test_raised_cosine_ramps_are_complementary_without_normalising():
    # Two tiles overlapping by exactly `overlap`: sin^2 + cos^2, the division changes nothing.
    w = axis_weights(112, [0, 48], 64, 16)
    assert w[0, :48].tolist() == [1.0] * 48 and w[1, 16:].tolist() == [1.0] * 48
    np.testing.assert_allclose(w[0, 48:] + w[1, :16], 1.0, atol=1e-15)
    assert w[1, :4].tolist() == [0.0] * 4 and 0 < w[1, 4] < 0.05 and w[1, 12] == 1.0


def test_2d_tile_weights_sum_to_one():
    tiling = plan_tiles(160, 144, PARAMS)
    assert tiling.count == 9
    total = tiling.blend(np.ones((tiling.count, 1, tiling.tile_h, tiling.tile_w), np.float32), 1)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_tiled_equals_untiled_and_shows_no_seam():
    net, image = ConvNet(), gradient(40, 36)
    assert plan_tiles(160, 144, PARAMS).count > 1 and plan_tiles(160, 144, WHOLE).count == 1
    whole = upscale(image, net, WHOLE, steps=4, seeds=[3])
    tiled = upscale(image, net, PARAMS, steps=4, seeds=[3])
    assert np.abs(tiled - whole).max() < 1e-4
    # No seam: along each tile boundary the tiled image steps no more than the whole one does there.
    for axis, starts in ((2, plan_tiles(160, 144, PARAMS).rows), (3, plan_tiles(160, 144, PARAMS).cols)):
        step_t, step_w = np.abs(np.diff(tiled, axis=axis)), np.abs(np.diff(whole, axis=axis))
        for s in starts[1:]:
            edge = np.take(step_t, range(s - 1, s + 1), axis=axis)
            assert np.abs(edge - np.take(step_w, range(s - 1, s + 1), axis=axis)).max() < 1e-4


def test_tiles_of_all_images_go_in_one_call_per_step():
    net = ConvNet()
    images = np.concatenate([gradient(40, 36), gradient(40, 36, 0.5)])
    upscale(images, net, PARAMS, steps=2, seeds=[1, 2])
    assert [shape for shape, _ in net.calls] == [(18, 4, 64, 64)] * 2


def test_any_size_is_padded_and_cropped():
    params = UpscaleParams(**{**PARAMS.__dict__, "size_multiple": 16})
    net = ConvNet()
    out = upscale(sprite(9, 7, 5), net, params, steps=1, seeds=[1])
    assert out.shape == (1, 4, 28, 20)
    assert net.calls[0][0] == (1, 4, 32, 32)


@pytest.mark.parametrize(("shape", "message"), [((1, 3, 8, 8), "RGBA"), ((1, 4, 0, 8), "empty")])
def test_bad_input_is_named(shape, message):
    with pytest.raises(ValueError, match=message):
        upscale(np.zeros(shape, np.float32), ConvNet(), PARAMS, steps=1, seeds=[1])


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="seeds"):
        upscale(sprite(1), ConvNet(), PARAMS, steps=1, seeds=[1, 2])
    with pytest.raises(ValueError, match="steps"):
        upscale(sprite(1), ConvNet(), PARAMS, steps=0, seeds=[1])
    with pytest.raises(ValueError, match="tile_overlap"):
        UpscaleParams(tile=16, tile_overlap=8)
    with pytest.raises(ValueError, match="size_multiple"):
        UpscaleParams(tile=15, tile_overlap=2, size_multiple=8)
