"""The numpy-free sampler catalog states what the sampler functions really take and cost."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from diffusion.defaults import DEFAULT_SAMPLER
from diffusion.noise import SeededNoise
from diffusion.sampler_catalog import CATALOG, SAMPLER_NAMES, effective_options, nfe, spec
from diffusion.samplers import SAMPLERS
from diffusion.schedules import karras_sigmas

CONTRACT = {"denoise", "x", "sigmas", "noise", "callback"}


def test_every_catalogued_sampler_is_registered_and_no_other():
    assert set(SAMPLER_NAMES) == set(SAMPLERS)
    assert DEFAULT_SAMPLER in CATALOG


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_the_catalogued_options_are_the_function_s_own_defaults(name):
    params = inspect.signature(SAMPLERS[name]).parameters
    options = {k: p.default for k, p in params.items() if k not in CONTRACT}
    assert options == dict(CATALOG[name].options)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_stochastic_means_the_image_depends_on_the_step_noise(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)) * 80.0
    sigmas = karras_sigmas(6, 0.002, 80.0)

    def denoise(x, sigma):
        return x / (1.0 + np.asarray(sigma).reshape(-1, 1) ** 2)  # a zero-mean unit Gaussian's x0

    a = SAMPLERS[name](denoise, x, sigmas, noise=SeededNoise((1, 2), (3,)))
    b = SAMPLERS[name](denoise, x, sigmas, noise=SeededNoise((5, 6), (3,)))
    assert (not np.array_equal(a, b)) == CATALOG[name].stochastic


def test_nfe_and_unknown_names():
    assert nfe("heun", 10) == 19 and nfe("unipc", 10) == 10 and nfe("heun", 0) == 0
    with pytest.raises(ValueError, match="unknown sampler 'nope'.*unipc"):
        spec("nope")


def test_effective_options_fill_defaults_and_drop_what_a_sampler_does_not_take():
    assert effective_options("dpmpp_2m_sde") == {"eta": 1.0, "s_noise": 1.0, "solver_type": "midpoint"}
    assert effective_options("ddim", eta=0.3) == {"eta": 0.3}
    assert effective_options("ddim", eta=None) == {"eta": 0.0}
    assert effective_options("unipc", eta=0.7) == {"order": 2, "variant": "bh2", "corrector": True}
    assert effective_options("dpmpp_2m", eta=0.7) == {}
