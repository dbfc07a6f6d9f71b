"""Every sampler against closed forms: Gaussian data N(mu, Sigma) and a Gaussian mixture.

For Gaussian data the ideal denoiser and the probability-flow ODE are exact
(:mod:`diffusion.toy`), so sample moments and per-sample ODE errors can be checked directly.
"""

import numpy as np
import pytest

from diffusion.defaults import DEFAULT_SAMPLER
from diffusion.noise import SeededNoise, initial_noise
from diffusion.sampler_catalog import CATALOG, nfe
from diffusion.samplers import SAMPLERS, STOCHASTIC, SamplerStep
from diffusion.schedules import karras_sigmas
from diffusion.toy import GaussianMixture, ring_mixture

D = 4
_rng = np.random.default_rng(0)
_A = _rng.standard_normal((D, D))
COV = _A @ _A.T / D + 0.05 * np.eye(D)
MU = _rng.standard_normal(D)
GAUSS = GaussianMixture.gaussian(MU, COV)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
DETERMINISTIC = sorted(set(SAMPLERS) - STOCHASTIC)
# Samplers whose moments converge on the ideal denoiser E[x0 | x]; a consistency sampler needs the
# ODE's end point instead (tests/diffusion/test_sampler_lcm.py checks it on that).
DIFFUSION = sorted(n for n in SAMPLERS if not CATALOG[n].consistency)


def moment_error(x, mean, cov):
    return max(np.abs(x.mean(0) - mean).max(), np.abs(np.cov(x.T) - cov).max())


def sample(name, dist, n, steps, **options):
    seeds = list(range(n))
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
    x = initial_noise(seeds, (dist.dim,)) * sigmas[0]
    return SAMPLERS[name](dist.denoise, x, sigmas, noise=SeededNoise(seeds, (dist.dim,)), **options)


def test_registry_names_match_proto_enum():
    assert set(SAMPLERS) == {
        "ddpm",
        "ddim",
        "euler",
        "euler_ancestral",
        "heun",
        "dpmpp_2m",
        "dpmpp_2m_sde",
        "unipc",
        "lcm",
    }
    assert DEFAULT_SAMPLER in SAMPLERS


@pytest.mark.parametrize("name", DIFFUSION)
def test_gaussian_moments_tighten_with_steps(name):
    # 8000 samples: moment estimates themselves are good to ~0.03 here.
    # Ancestral samplers converge slowest (about 1/steps in distribution); ODE solvers reach the
    # sampling floor of the moment estimates (~0.02) by 128 steps.
    tolerance = {8: 1.5, 32: 0.6, 128: 0.2 if name in STOCHASTIC else 0.08}
    errors = {steps: moment_error(sample(name, GAUSS, 8000, steps), MU, COV) for steps in tolerance}
    for steps, err in errors.items():
        assert err < tolerance[steps], (name, errors)
    assert errors[8] > errors[32] > errors[128], (name, errors)


@pytest.mark.parametrize("name", DIFFUSION)
def test_gaussian_mixture_moments(name):
    mix = ring_mixture(k=4, radius=1.0, std=0.2, dim=3)
    x = sample(name, mix, 6000, 64)
    assert moment_error(x, mix.mean(), mix.cov()) < 0.08
    # Mass splits evenly over the four components (|cos|/|sin| of the angle picks the quadrant).
    angle = np.arctan2(x[:, 1], x[:, 0])
    counts = np.bincount(np.round(angle / (np.pi / 2)).astype(int) % 4, minlength=4) / len(x)
    np.testing.assert_allclose(counts, 0.25, atol=0.04)


def ode_error(name, steps, n=64):
    """RMS distance to the exact ODE solution (exact flow to sigma_min, then the final denoise)."""
    sigmas = karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
    z = initial_noise(range(n), (D,))
    ref = GAUSS.ode_solution(z * SIGMA_MAX, SIGMA_MAX, SIGMA_MIN)
    ref = GAUSS.denoise(ref, np.full(n, SIGMA_MIN))
    x = SAMPLERS[name](GAUSS.denoise, z * SIGMA_MAX, sigmas)
    return float(np.sqrt(np.mean((x - ref) ** 2)))


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("euler", 0.85, 1.2), ("ddim", 0.85, 1.2), ("heun", 1.8, 2.5), ("dpmpp_2m", 1.8, 2.5), ("unipc", 2.6, 3.5)],
)
def test_convergence_order(name, low, high):
    errors = [ode_error(name, steps) for steps in (32, 64, 128)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > low) & (orders < high)), (name, errors, orders)


def test_higher_order_needs_several_times_fewer_evaluations():
    # Error ~ C/NFE for Euler, C'/NFE^p for the others: the gap widens as the target tightens.
    target = ode_error("euler", 512)  # Euler / DDIM at 512 evaluations: RMS error ~5e-3
    assert ode_error("ddim", 512) == pytest.approx(target)
    for name, steps in (("heun", 64), ("dpmpp_2m", 64), ("unipc", 48)):
        assert nfe(name, steps) * 4 <= 512
        assert ode_error(name, steps) < target, name


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_samplers_converge(name):
    errors = [ode_error(name, steps) for steps in (8, 16, 32, 64)]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.04


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_and_evaluation_count(name):
    calls, steps_seen = [], []

    def counted(x, sigma):
        assert sigma.shape == (x.shape[0],) and sigma.dtype == np.float64
        calls.append(float(sigma[0]))
        return GAUSS.denoise(x, sigma)

    sigmas = karras_sigmas(7, SIGMA_MIN, SIGMA_MAX)
    x = initial_noise([1, 2, 3], (D,)) * sigmas[0]
    out = SAMPLERS[name](counted, x, sigmas, callback=steps_seen.append)
    assert out.shape == x.shape and np.all(np.isfinite(out))
    assert len(calls) == nfe(name, 7)
    assert [s.i for s in steps_seen] == list(range(7))
    first = steps_seen[0]
    assert isinstance(first, SamplerStep) and first.steps == 7
    assert first.sigma == pytest.approx(SIGMA_MAX) and first.sigma_next == pytest.approx(sigmas[1])
    assert first.x.shape == x.shape and first.denoised.shape == x.shape


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_no_steps_and_bad_schedules(name):
    x = np.ones((2, D))
    np.testing.assert_array_equal(SAMPLERS[name](GAUSS.denoise, x, np.zeros(1)), x)
    for bad in ([1.0, 0.5], [1.0, 2.0, 0.0], [1.0, 1.0, 0.0]):
        with pytest.raises(ValueError):
            SAMPLERS[name](GAUSS.denoise, x, np.array(bad))


def test_float32_latents_stay_float32():
    sigmas = karras_sigmas(5, SIGMA_MIN, SIGMA_MAX)
    x = (initial_noise([1, 2], (D,)) * sigmas[0]).astype(np.float32)

    def denoise32(x, sigma):
        return GAUSS.denoise(x, sigma).astype(np.float32)

    for name in SAMPLERS:
        assert SAMPLERS[name](denoise32, x, sigmas).dtype == np.float32, name
