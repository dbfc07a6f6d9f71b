"""The sampler registry: name -> pure sampling function.

Every entry has the signature (see :mod:`diffusion.sampling` for the full contract)::

    sample(denoise, x, sigmas, *, noise=None, callback=None, **options) -> x

The names, options with their defaults and evaluation counts are
:mod:`diffusion.sampler_catalog`'s (numpy-free, read by the gateway too); this module binds each
name to its function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from diffusion.defaults import DEFAULT_SAMPLER
from diffusion.sampler_catalog import CATALOG, nfe
from diffusion.samplers_consistency import sample_lcm
from diffusion.samplers_multistep import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_unipc
from diffusion.samplers_single import (
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
)
from diffusion.sampling import Callback, Denoiser, SamplerStep, check_sigmas

__all__ = [
    "DEFAULT_SAMPLER",
    "SAMPLERS",
    "STOCHASTIC",
    "Callback",
    "Denoiser",
    "SamplerStep",
    "check_sigmas",
    "get_sampler",
    "nfe",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_euler",
    "sample_euler_ancestral",
    "sample_heun",
    "sample_lcm",
    "sample_unipc",
]

Sampler = Callable[..., np.ndarray]

SAMPLERS: dict[str, Sampler] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "unipc": sample_unipc,
    "lcm": sample_lcm,
}

# Samplers that call ``noise`` with their default options (their output depends on the seeds).
STOCHASTIC = frozenset(name for name, spec in CATALOG.items() if spec.stochastic)


def get_sampler(name: str) -> Sampler:
    """The sampler registered as ``name``; ValueError naming the choices otherwise."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}") from None
