"""Denoiser adapters (eps / v / x0 VP networks, EDM), x0 clipping and classifier-free guidance."""

import numpy as np
import pytest

from diffusion.denoisers import Clipped, EDMDenoiser, VPDenoiser, bind, dynamic_threshold, static_threshold
from diffusion.guidance import ClassifierFreeGuidance, guided, split_cond, stack_cond
from diffusion.noise import initial_noise
from diffusion.samplers import SAMPLERS
from diffusion.schedules import (
    alphas_cumprod_from_betas,
    betas_cosine,
    betas_scaled_linear,
    t_to_sigma,
    timestep_sigmas,
    vp_sigmas,
)
from diffusion.toy import ring_mixture

TOY = ring_mixture(k=4, radius=0.8, std=0.05, dim=2 * 2 * 2)
ACP = alphas_cumprod_from_betas(betas_scaled_linear())
TRAIN = vp_sigmas(ACP)


def vp_network(prediction, acp=ACP, error=0.0):
    """An ideal discrete-time network predicting eps, v or x0 from VP input (x_vp, t)."""
    train = vp_sigmas(acp)
    seen = []

    def net(x_vp, t, cond=None):
        seen.append((x_vp.dtype, np.array(t)))
        sigma = t_to_sigma(t, train)
        s = sigma[:, None, None, None]
        x = x_vp * np.sqrt(1 + s**2)
        x0, eps = TOY.denoise(x, sigma), TOY.eps(x, sigma) * (1 + error)
        alpha, sigma_vp = 1 / np.sqrt(1 + s**2), s / np.sqrt(1 + s**2)
        out = {"eps": eps, "v": alpha * eps - sigma_vp * x0, "x0": x0}[prediction]
        return out.astype(x_vp.dtype)

    net.seen = seen
    return net


@pytest.mark.parametrize("prediction", ["eps", "epsilon", "v", "v_prediction", "x0", "sample"])
def test_vp_adapters_recover_the_ideal_denoiser(prediction):
    canonical = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}.get(prediction, prediction)
    den = VPDenoiser(vp_network(canonical), ACP, prediction=prediction)
    x = initial_noise(range(5), (2, 2, 2)) * 3.0
    sigma = np.array([TRAIN[0], TRAIN[10], 1.2345, 7.5, TRAIN[-1]])  # on and between training steps
    np.testing.assert_allclose(den(x, sigma), TOY.denoise(x, sigma), atol=1e-10)
    # Per-sample sigma: a row's result does not depend on the others.
    np.testing.assert_allclose(den(x[2:3], sigma[2:3]), den(x, sigma)[2:3], atol=1e-12)


def test_vp_adapter_timesteps_and_dtype():
    net = vp_network("eps")
    den = VPDenoiser(net, ACP, quantize=True)
    x = initial_noise([1, 2], (2, 2, 2)).astype(np.float32)
    out = den(x, np.array([TRAIN[100], np.sqrt(TRAIN[10] * TRAIN[11])]))
    assert out.dtype == np.float32 and net.seen[-1][0] == np.float32
    np.testing.assert_array_equal(net.seen[-1][1], [100.0, 10.0])  # 10.5 rounds to even
    assert den.sigma_min == pytest.approx(TRAIN[0]) and den.sigma_max == pytest.approx(TRAIN[-1])
    with pytest.raises(ValueError):
        VPDenoiser(net, ACP, prediction="flow")


def test_edm_preconditioning():
    sigma_data = 0.5

    def net(x_in, c_noise, cond=None):
        sigma = np.exp(4 * c_noise)[:, None, None, None]
        x = x_in * np.sqrt(sigma**2 + sigma_data**2)
        c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
        c_out = sigma * sigma_data / np.sqrt(sigma**2 + sigma_data**2)
        return (TOY.denoise(x, sigma.ravel()) - c_skip * x) / c_out

    x = initial_noise(range(3), (2, 2, 2)) * 2.0
    sigma = np.array([0.01, 1.0, 50.0])
    np.testing.assert_allclose(EDMDenoiser(net, sigma_data)(x, sigma), TOY.denoise(x, sigma), atol=1e-9)


def test_thresholding():
    x0 = np.array([[[[0.5, -3.0], [2.0, 0.1]]], [[[0.2, -0.3], [0.4, 0.1]]]])
    np.testing.assert_array_equal(static_threshold(x0), np.clip(x0, -1, 1))
    d = dynamic_threshold(x0, percentile=1.0)
    # Row 0: s = 3 -> divided by 3; row 1 inside [-1, 1]: untouched (s = max(q, 1) = 1).
    np.testing.assert_allclose(d[0], x0[0] / 3.0)
    np.testing.assert_allclose(d[1], x0[1])
    assert np.abs(dynamic_threshold(x0 * 10, 0.995, limit=4.0)).max() <= 4.0 + 1e-12
    with pytest.raises(ValueError):
        Clipped(lambda x, s, c: x, method="soft")


def test_clipping_tames_multistep_on_cosine_schedule():
    # Cosine betas reach sigma ~ 2e4; a 1% eps error there is a ~200 error in x0 that second-order
    # extrapolation carries forward.  Clipping keeps the result inside the data range.
    acp = alphas_cumprod_from_betas(betas_cosine())
    den = VPDenoiser(vp_network("eps", acp, error=0.01), acp)
    sigmas = timestep_sigmas(vp_sigmas(acp), 10, "linspace")
    x = initial_noise(range(16), (2, 2, 2)) * sigmas[0]
    raw = SAMPLERS["dpmpp_2m"](bind(den), x, sigmas)
    clipped = SAMPLERS["dpmpp_2m"](bind(Clipped(den, "dynamic", limit=1.0)), x, sigmas)
    static = SAMPLERS["dpmpp_2m"](bind(Clipped(den, "static", limit=1.0)), x, sigmas)
    assert np.abs(raw).max() > 1.2  # data radius is 0.8
    assert np.abs(clipped).max() < 0.9 and np.abs(static).max() < 0.9


class CountingDenoiser:
    """cond is a per-row offset added to the ideal x0 (a stand-in for a prompt's pull)."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, cond):
        self.calls.append(x.shape[0])
        offset = cond["offset"] if isinstance(cond, dict) else cond
        return TOY.denoise(x, sigma) + offset[:, None, None, None]


def test_cfg_is_one_network_call_with_stacked_rows():
    den = CountingDenoiser()
    x = initial_noise(range(3), (2, 2, 2))
    sigma = np.array([0.5, 1.0, 2.0])
    cond, uncond = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.5, -1.0])
    out = ClassifierFreeGuidance(den, cond, uncond, scale=4.0)(x, sigma)
    assert den.calls == [6]
    expected = TOY.denoise(x, sigma) + (uncond + 4.0 * (cond - uncond))[:, None, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-12)
    # Scale 1: conditional branch only, B rows.
    np.testing.assert_allclose(
        guided(den, cond, uncond, 1.0)(x, sigma), TOY.denoise(x, sigma) + cond[:, None, None, None]
    )
    assert den.calls[-1] == 3
    # Per-sample scales and dict conditionings.
    w = np.array([1.0, 2.0, 7.5])
    out = guided(den, {"offset": cond}, {"offset": uncond}, w)(x, sigma)
    np.testing.assert_allclose(out, TOY.denoise(x, sigma) + (uncond + w * (cond - uncond))[:, None, None, None])


def test_guidance_rescale():
    def den(x, sigma, cond):
        return x * cond[:, None, None, None]

    x = initial_noise(range(2), (2, 2, 2))
    cond, uncond = np.array([1.0, 2.0]), np.array([0.5, 0.5])
    plain = guided(den, cond, uncond, 5.0)(x, np.ones(2))
    full = guided(den, cond, uncond, 5.0, rescale=1.0)(x, np.ones(2))
    np.testing.assert_allclose(full.reshape(2, -1).std(1), (x * cond[:, None, None, None]).reshape(2, -1).std(1))
    half = guided(den, cond, uncond, 5.0, rescale=0.5)(x, np.ones(2))
    np.testing.assert_allclose(half, 0.5 * plain + 0.5 * full)


def test_stack_and_split_cond():
    a = {"emb": np.zeros((2, 3)), "pooled": (np.zeros((2, 1)), np.ones((2, 4)))}
    b = {"emb": np.ones((2, 3)), "pooled": (np.ones((2, 1)), np.zeros((2, 4)))}
    stacked = stack_cond(a, b)
    assert stacked["emb"].shape == (4, 3) and stacked["pooled"][1].shape == (4, 4)
    first, second = split_cond(stacked, 2)
    np.testing.assert_array_equal(first["emb"], a["emb"])
    np.testing.assert_array_equal(second["pooled"][1], b["pooled"][1])
    assert stack_cond(None, None) is None
