"""Image-to-image (strength) and inpainting (known region kept) with every sampler."""

import numpy as np
import pytest

from diffusion.editing import Inpaint, composite, img2img_start, latent_mask, truncate_sigmas
from diffusion.noise import SeededNoise, initial_noise
from diffusion.samplers import SAMPLERS
from diffusion.schedules import karras_sigmas
from diffusion.toy import ring_mixture

SHAPE = (2, 4, 4)
TOY = ring_mixture(k=4, radius=1.0, std=0.3, dim=2 * 4 * 4)
SEEDS = [5, 6, 7]


def test_truncate_sigmas():
    sigmas = karras_sigmas(10)
    np.testing.assert_array_equal(truncate_sigmas(sigmas, 1.0), sigmas)
    np.testing.assert_array_equal(truncate_sigmas(sigmas, 0.0), [0.0])
    np.testing.assert_array_equal(truncate_sigmas(sigmas, 0.3), sigmas[7:])
    np.testing.assert_array_equal(truncate_sigmas(sigmas, 0.05), [0.0])
    with pytest.raises(ValueError):
        truncate_sigmas(sigmas, 1.5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_strength_zero_returns_init_and_strength_works(name):
    init = TOY.sample(3, np.random.default_rng(0)).reshape(3, *SHAPE)
    z = initial_noise(SEEDS, SHAPE)
    x, tail = img2img_start(init, karras_sigmas(10, 0.002, 80.0), 0.0, z)
    out = SAMPLERS[name](TOY.denoise, x, tail, noise=SeededNoise(SEEDS, SHAPE))
    np.testing.assert_array_equal(out, init)
    # Low strength stays near the init; full strength forgets it.
    x, tail = img2img_start(init, karras_sigmas(10, 0.002, 80.0), 0.3, z)
    assert tail.size == 4 and tail[0] == karras_sigmas(10, 0.002, 80.0)[7]
    np.testing.assert_allclose(x, init + tail[0] * z)
    near = SAMPLERS[name](TOY.denoise, x, tail, noise=SeededNoise(SEEDS, SHAPE))
    x, tail = img2img_start(init, karras_sigmas(10, 0.002, 80.0), 1.0, z)
    far = SAMPLERS[name](TOY.denoise, x, tail, noise=SeededNoise(SEEDS, SHAPE))
    assert np.sqrt(np.mean((near - init) ** 2)) < 0.3 * np.sqrt(np.mean((far - init) ** 2))


def test_latent_mask_downsampling():
    mask = np.zeros((16, 16))
    mask[0, 0] = 1.0  # one repainted pixel
    mask[8:, 8:] = 1.0
    m = latent_mask(mask, (4, 4))
    assert m.shape == (1, 1, 4, 4) and m[0, 0, 0, 0] == 1.0 and m[0, 0, 2:, 2:].min() == 1.0
    assert m.sum() == 5
    area = latent_mask(mask, (4, 4), mode="area")
    assert area[0, 0, 0, 0] == pytest.approx(1 / 16)
    uint8 = latent_mask((mask * 255).astype(np.uint8)[None], (4, 4))
    np.testing.assert_array_equal(uint8, m)
    np.testing.assert_array_equal(latent_mask(m, (4, 4)), m)  # already at latent resolution
    with pytest.raises(ValueError):
        latent_mask(np.zeros((10, 10)), (4, 4))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_inpainting_keeps_known_region(name):
    known = TOY.sample(3, np.random.default_rng(1)).reshape(3, *SHAPE)
    image_mask = np.zeros((3, 16, 16))
    image_mask[:, :, 8:] = 1.0  # repaint the right half
    mask = latent_mask(image_mask, (4, 4))
    sigmas = karras_sigmas(12, 0.002, 80.0)
    z = initial_noise(SEEDS, SHAPE)
    den = Inpaint(TOY.denoise, known, mask, z)
    out = SAMPLERS[name](den, z * sigmas[0], sigmas, noise=SeededNoise(SEEDS, SHAPE))
    keep = np.broadcast_to(mask == 0, out.shape)
    np.testing.assert_allclose(out[keep], known[keep], atol=1e-9)
    assert not np.allclose(out[~keep], known[~keep])
    np.testing.assert_array_equal(composite(out, known, mask)[keep], known[keep])
