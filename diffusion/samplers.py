"""The sampler registry: name -> pure sampling function.

Every entry has the signature (see :mod:`diffusion.sampling` for the full contract)::

    sample(denoise, x, sigmas, *, noise=None, callback=None, **options) -> x

The names are the proto enum ``atelier.v1.Sampler`` without its prefix, lower-cased
(``SAMPLER_DPMPP_2M`` <-> ``"dpmpp_2m"``).  ``NFE`` gives the number of denoiser evaluations
a sampler spends for a given number of steps (what a job's cost and ETA are made of).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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
    "ETA_SAMPLERS",
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
}

# Chosen by bench/samplers.py (docs/BENCHMARKS.md, "Samplers (issue 3)"): best at ~10 evaluations, where it
# matches DDIM at 50 with 8; use it with `schedules.DEFAULT_SIGMA_SPACING`.
DEFAULT_SAMPLER = "unipc"

# Samplers that call ``noise`` with their default options (their output depends on the seeds).
STOCHASTIC = frozenset({"ddpm", "euler_ancestral", "dpmpp_2m_sde"})

# Samplers taking an ``eta`` option (the proto's GenerateRequest.eta, stochasticity in [0, 1]).
ETA_SAMPLERS = frozenset({"ddim", "euler_ancestral", "dpmpp_2m_sde"})


def get_sampler(name: str) -> Sampler:
    """The sampler registered as ``name``; ValueError naming the choices otherwise."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}") from None


def nfe(name: str, steps: int) -> int:
    """Denoiser evaluations ``name`` spends on ``steps`` steps (a schedule of steps + 1 sigmas)."""
    get_sampler(name)
    if name == "heun":
        return max(0, 2 * steps - 1)
    return steps
