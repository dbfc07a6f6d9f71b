"""Same seed, same image: alone or at any position of a batch of 8, for every sampler."""

import numpy as np
import pytest

from diffusion.noise import SeededNoise, initial_noise
from diffusion.samplers import SAMPLERS
from diffusion.schedules import karras_sigmas
from diffusion.toy import ring_mixture

TOY = ring_mixture(k=4, radius=1.0, std=0.3, dim=4 * 4 * 4)
SHAPE = (4, 4, 4)
SEEDS = [11, 2**63 + 5, 0, 42, 7, 99, 123456789, 2**64 - 1]


def run(name, seeds, noise="seeded", **options):
    sigmas = karras_sigmas(6, 0.01, 20.0)
    x = initial_noise(seeds, SHAPE) * sigmas[0]
    source = SeededNoise(seeds, SHAPE) if noise == "seeded" else None
    return SAMPLERS[name](TOY.denoise, x, sigmas, noise=source, **options)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("noise", ["seeded", None])
def test_alone_equals_in_batch(name, noise):
    batch = run(name, SEEDS, noise)
    for position in (0, 3, 7):
        alone = run(name, [SEEDS[position]], noise)[0]
        # The toy denoiser is row-wise; allow for BLAS summation order across batch sizes.
        np.testing.assert_allclose(batch[position], alone, rtol=0, atol=1e-12)
    # Moving the seed elsewhere in the batch does not change it either.
    shuffled = [SEEDS[3], *SEEDS[:3], *SEEDS[4:]]
    np.testing.assert_allclose(run(name, shuffled, noise)[0], batch[3], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["ddpm", "euler_ancestral", "dpmpp_2m_sde", "lcm"])
def test_stochastic_samplers_depend_on_seed(name):
    a = run(name, [1, 2])
    b = run(name, [1, 3])
    np.testing.assert_allclose(a[0], b[0], atol=1e-12)
    assert not np.allclose(a[1], b[1])


def test_churn_uses_noise_deterministically():
    a = run("heun", SEEDS, s_churn=2.0)
    b = run("heun", SEEDS, s_churn=2.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, run("heun", SEEDS))
