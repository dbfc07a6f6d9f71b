"""The consistency sampler against closed forms on Gaussian data N(mu, Sigma).

For Gaussian data the probability-flow ODE is linear and its end point is known
(:meth:`diffusion.toy.GaussianMixture.ode_solution`), so the exact consistency function
f(x, sigma) = ODE(x; sigma -> 0) can be written down: with it every step count draws exactly
from the data distribution, and one step is the ODE solution itself. With the ordinary ideal
denoiser E[x0 | x] one step is that posterior mean."""

import numpy as np
import pytest

from diffusion.noise import SeededNoise, initial_noise
from diffusion.sampler_catalog import CATALOG, nfe
from diffusion.samplers import SAMPLERS, STOCHASTIC, sample_lcm
from diffusion.schedules import karras_sigmas
from diffusion.toy import GaussianMixture

D = 4
_rng = np.random.default_rng(3)
_A = _rng.standard_normal((D, D))
COV = _A @ _A.T / D + 0.05 * np.eye(D)
MU = _rng.standard_normal(D)
GAUSS = GaussianMixture.gaussian(MU, COV)
SIGMA_MAX = 80.0


def consistency_fn(x, sigma):
    """The exact consistency function of GAUSS: every row mapped along its ODE to sigma = 0."""
    return np.stack([GAUSS.ode_solution(row[None], float(s), 0.0)[0] for row, s in zip(x, sigma, strict=True)])


def draw(denoise, n, steps, sigma_min=0.5):
    seeds = list(range(n))
    sigmas = karras_sigmas(steps, sigma_min, SIGMA_MAX)
    x = initial_noise(seeds, (D,)) * sigmas[0]
    return x, sample_lcm(denoise, x, sigmas, noise=SeededNoise(seeds, (D,)))


def test_registered_with_one_evaluation_a_step_and_fresh_noise():
    assert SAMPLERS["lcm"] is sample_lcm
    assert "lcm" in STOCHASTIC and CATALOG["lcm"].consistency and not CATALOG["heun"].consistency
    assert [nfe("lcm", s) for s in (1, 2, 4, 8)] == [1, 2, 4, 8]


def test_one_step_is_the_exact_ode_solution_and_the_exact_posterior_mean():
    x, out = draw(consistency_fn, 16, 1)
    np.testing.assert_allclose(out, GAUSS.ode_solution(x, SIGMA_MAX, 0.0), rtol=0, atol=1e-12)
    x, out = draw(GAUSS.denoise, 16, 1)
    np.testing.assert_allclose(out, GAUSS.denoise(x, np.full(16, SIGMA_MAX)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_every_step_count_draws_the_data_distribution(steps):
    """Each step's re-noised estimate x0 + sigma z is an exact draw at sigma when x0 is an exact
    data sample, so the moments are exact at any step count (up to the Monte Carlo error of 6000
    samples, ~0.03 here)."""
    _, x = draw(consistency_fn, 6000, steps)
    assert np.abs(x.mean(0) - MU).max() < 0.06
    assert np.abs(np.cov(x.T) - COV).max() < 0.08


def test_steps_past_the_first_use_the_seeded_noise_of_their_index():
    calls, seen = [], []

    def noise(k):
        calls.append(k)
        return np.full((3, D), float(k + 1))

    sigmas = np.array([10.0, 2.0, 0.5, 0.0])
    x = np.zeros((3, D))
    out = sample_lcm(lambda x, s: np.zeros_like(x), x, sigmas, noise=noise, callback=seen.append)
    assert calls == [0, 1] and [s.i for s in seen] == [0, 1, 2]
    np.testing.assert_array_equal(seen[1].x, np.full((3, D), 2.0))  # 0 + sigma_1 * noise(0)
    np.testing.assert_array_equal(seen[2].x, np.full((3, D), 1.0))  # 0 + sigma_2 * noise(1)
    np.testing.assert_array_equal(out, np.zeros((3, D)))  # the last step adds no noise


def test_one_step_draws_no_noise():
    def refuse(k):
        raise AssertionError("one step must not draw noise")

    sigmas = karras_sigmas(1, 0.5, SIGMA_MAX)
    x = initial_noise([5], (D,)) * sigmas[0]
    np.testing.assert_array_equal(sample_lcm(consistency_fn, x, sigmas, noise=refuse), consistency_fn(x, sigmas[:1]))
