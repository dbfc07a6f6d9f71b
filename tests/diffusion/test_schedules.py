"""Schedules: beta schedules, VP sigmas, respacing rules, Karras/exponential, sigma <-> t."""

import numpy as np
import pytest

from diffusion import schedules as S


@pytest.mark.parametrize("name", sorted(S.BETA_SCHEDULES))
def test_beta_schedules_are_valid(name):
    betas = S.betas_for(name, 1000)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    assert np.all((betas > 0) & (betas < 1))
    acp = S.alphas_cumprod_from_betas(betas)
    assert np.all(np.diff(acp) < 0)
    sig = S.vp_sigmas(acp)
    assert np.all(np.diff(sig) > 0)
    np.testing.assert_allclose(S.sigmas_to_alphas_cumprod(sig), acp, rtol=1e-12)


def test_known_values():
    # Ho et al. 2020: beta_1 = 1e-4, beta_T = 0.02; LDM: sqrt-linear between 0.00085 and 0.012.
    assert S.betas_linear()[0] == pytest.approx(1e-4) and S.betas_linear()[-1] == pytest.approx(0.02)
    b = S.betas_scaled_linear()
    assert b[0] == pytest.approx(0.00085) and b[-1] == pytest.approx(0.012)
    # Nichol & Dhariwal: alpha-bar_t = f(t)/f(0) up to beta clipping, f(t) = cos²((t/T + s)/(1 + s) π/2).
    acp = S.alphas_cumprod_from_betas(S.betas_cosine(1000))
    f = np.cos((np.arange(1, 1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(acp[:900], (f / np.cos(0.008 / 1.008 * np.pi / 2) ** 2)[:900], rtol=1e-9)
    with pytest.raises(ValueError):
        S.betas_for("nope")


def test_sigma_t_roundtrip_and_interpolation():
    train = S.vp_sigmas(S.alphas_cumprod_from_betas(S.betas_scaled_linear()))
    t = np.arange(1000, dtype=np.float64)
    np.testing.assert_allclose(S.sigma_to_t(train, train), t, atol=1e-9)
    np.testing.assert_allclose(S.t_to_sigma(t, train), train, rtol=1e-12)
    # Between two steps t is linear in log(sigma).
    mid = np.sqrt(train[10] * train[11])
    assert S.sigma_to_t(mid, train) == pytest.approx(10.5)
    assert S.t_to_sigma(10.5, train) == pytest.approx(mid)
    # Out of the trained range: clamped.
    assert S.sigma_to_t(1e-9, train) == 0 and S.sigma_to_t(1e9, train) == 999
    frac = np.linspace(0, 999, 77)
    np.testing.assert_allclose(S.sigma_to_t(S.t_to_sigma(frac, train), train), frac, atol=1e-9)


@pytest.mark.parametrize("kind", ["linspace", "trailing", "leading", "karras", "exponential"])
@pytest.mark.parametrize("n", [1, 2, 10, 50])
def test_sampling_sigmas_shape(kind, n):
    train = S.vp_sigmas(S.alphas_cumprod_from_betas(S.betas_linear()))
    sig = S.sampling_sigmas(kind, n, train)
    assert sig.dtype == np.float64 and sig.shape == (n + 1,) and sig[-1] == 0
    assert np.all(np.diff(sig) < 0)


def test_spacing_rules():
    # Lin et al. 2023, Table 2 (T = 1000, 10 steps).
    np.testing.assert_array_equal(S.timesteps_for(10, 1000, "leading"), np.arange(900, -1, -100))
    np.testing.assert_array_equal(S.timesteps_for(10, 1000, "trailing"), np.arange(999, 0, -100))
    np.testing.assert_array_equal(
        S.timesteps_for(10, 1000, "linspace"), [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
    )
    np.testing.assert_array_equal(S.timesteps_for(4, 1000, "leading", steps_offset=1), [751, 501, 251, 1])
    with pytest.raises(ValueError):
        S.timesteps_for(10, 1000, "random")


def test_karras_and_exponential_endpoints():
    k = S.karras_sigmas(10, 0.002, 80.0)
    assert k[0] == pytest.approx(80.0) and k[-2] == pytest.approx(0.002)
    # EDM eq. 5: sigma^(1/rho) is linear in i.
    np.testing.assert_allclose(np.diff(k[:-1] ** (1 / 7)), np.diff(k[:-1] ** (1 / 7))[0], rtol=1e-9)
    e = S.exponential_sigmas(10, 0.01, 10.0)
    np.testing.assert_allclose(np.diff(np.log(e[:-1])), np.log(0.001) / 9, rtol=1e-12)


def test_matches_diffusers_schedules():
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    del torch
    for name, kw in [
        ("linear", {}),
        ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
        ("squaredcos_cap_v2", {}),
    ]:
        sched = diffusers.DDIMScheduler(beta_schedule=name, **kw)
        ours = S.alphas_cumprod_from_betas(S.betas_for("cosine" if name.startswith("squared") else name, 1000, **kw))
        # diffusers keeps float32.
        np.testing.assert_allclose(sched.alphas_cumprod.numpy(), ours, rtol=2e-5, atol=1e-7)
    for spacing in ["leading", "trailing"]:
        sched = diffusers.DDIMScheduler(timestep_spacing=spacing)
        sched.set_timesteps(17)
        np.testing.assert_array_equal(sched.timesteps.numpy(), S.timesteps_for(17, 1000, spacing))
    for spacing in ["linspace", "trailing"]:
        sched = diffusers.DPMSolverMultistepScheduler(timestep_spacing=spacing)
        sched.set_timesteps(17)
        np.testing.assert_array_equal(sched.timesteps.numpy(), S.timesteps_for(17, 1000, spacing))
