"""diffusers as a test-only oracle: same eps network, same initial noise, same result.

diffusers steps VP latents x_vp = x_ve / sqrt(1 + sigma²) over integer timesteps; our samplers
step VE latents over the matching sigmas.  A VP start z maps to x_ve = z * sqrt(1 + sigma_0²),
and at sigma = 0 both coordinates coincide, so the final samples compare directly.
"""

import numpy as np
import pytest

from diffusion.denoisers import VPDenoiser, bind
from diffusion.samplers import SAMPLERS
from diffusion.schedules import t_to_sigma, vp_sigmas
from diffusion.toy import ring_mixture

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

TOY = ring_mixture(k=4, radius=1.0, std=0.3, dim=2 * 4 * 4)
SHAPE = (6, 2, 4, 4)
BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def eps_network(train_sigmas):
    """A discrete-time eps network: the toy's ideal noise prediction, in VP coordinates."""

    def net(x_vp, t, cond=None):
        sigma = t_to_sigma(t, train_sigmas)
        x_ve = x_vp * np.sqrt(1.0 + sigma**2)[:, None, None, None]
        return TOY.eps(x_ve, sigma)

    return net


def compare(scheduler, sampler, steps, **options):
    train_sigmas = vp_sigmas(scheduler.alphas_cumprod.numpy().astype(np.float64))
    net = eps_network(train_sigmas)
    z = np.random.default_rng(steps).standard_normal(SHAPE)

    scheduler.set_timesteps(steps)
    latents = torch.from_numpy(z.copy())
    for t in scheduler.timesteps:
        eps = net(latents.numpy(), np.full(SHAPE[0], float(t)))
        latents = scheduler.step(torch.from_numpy(eps), t, latents).prev_sample
    expected = latents.numpy()

    sigmas = np.concatenate([train_sigmas[scheduler.timesteps.numpy()], [0.0]])
    denoise = bind(VPDenoiser(net, scheduler.alphas_cumprod.numpy(), prediction="epsilon"))
    ours = SAMPLERS[sampler](denoise, z * np.sqrt(1 + sigmas[0] ** 2), sigmas, **options)
    assert np.abs(expected).max() > 0.5  # a real sample, not a collapsed one
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("steps", [10, 25])
def test_ddim_matches_diffusers(spacing, steps):
    # Step counts dividing T: DDIMScheduler steps to t - T // steps, which is the next listed
    # timestep only then (with "trailing" and e.g. 30 steps it lands between them).
    scheduler = diffusers.DDIMScheduler(
        **BETAS, timestep_spacing=spacing, clip_sample=False, set_alpha_to_one=True, steps_offset=0
    )
    compare(scheduler, "ddim", steps)


@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
@pytest.mark.parametrize("steps", [10, 25])
def test_dpmpp_2m_matches_diffusers(spacing, steps):
    scheduler = diffusers.DPMSolverMultistepScheduler(
        **BETAS, timestep_spacing=spacing, algorithm_type="dpmsolver++", solver_order=2
    )
    compare(scheduler, "dpmpp_2m", steps)


@pytest.mark.parametrize("order", [2, 3])
def test_unipc_matches_diffusers(order):
    scheduler = diffusers.UniPCMultistepScheduler(**BETAS, solver_order=order, solver_type="bh2")
    compare(scheduler, "unipc", 12, order=order)
