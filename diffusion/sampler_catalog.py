"""What every sampler is, without the numerics: names, cost and options with their defaults.

This module imports nothing (no numpy), so the gateway, the command line and the proto test
read the same facts the worker runs on; :mod:`diffusion.samplers` binds each name to its
function and checks that the two agree. The names are the proto enum ``atelier.v1.Sampler``
without its prefix, lower-cased (``SAMPLER_DPMPP_2M`` <-> ``"dpmpp_2m"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["CATALOG", "SAMPLER_NAMES", "SamplerSpec", "effective_options", "nfe", "spec", "steps_run"]

_CHURN = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": math.inf, "s_noise": 1.0}


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    # Every option the sampler takes, at the value it uses when a job leaves it out.
    options: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    # Draws fresh noise at its default options: its image depends on the seed beyond the start.
    stochastic: bool = False
    # Heun's corrector (Karras et al. 2022, Algorithm 1) evaluates twice on every step except
    # the last, which lands on sigma = 0.
    corrector: bool = False
    # Needs a consistency model (its denoiser returns the ODE's end point, not E[x0 | x]): on an
    # ordinary denoiser it runs but its images stay blurred at any step count.
    consistency: bool = False

    def nfe(self, steps: int) -> int:
        """Denoiser evaluations spent on ``steps`` steps (a schedule of steps + 1 sigmas)."""
        return max(0, 2 * steps - 1) if self.corrector else steps


def _spec(name: str, options: dict[str, Any] | None = None, **flags: bool) -> SamplerSpec:
    return SamplerSpec(name, MappingProxyType(dict(options or {})), **flags)


CATALOG: MappingProxyType = MappingProxyType({s.name: s for s in (
    _spec("ddpm", {"variance": "posterior"}, stochastic=True),
    _spec("ddim", {"eta": 0.0}),
    _spec("euler", _CHURN),
    _spec("euler_ancestral", {"eta": 1.0, "s_noise": 1.0}, stochastic=True),
    _spec("heun", _CHURN, corrector=True),
    _spec("dpmpp_2m"),
    _spec("dpmpp_2m_sde", {"eta": 1.0, "s_noise": 1.0, "solver_type": "midpoint"}, stochastic=True),
    _spec("unipc", {"order": 2, "variant": "bh2", "corrector": True}),
    # Multistep consistency sampling (Song et al. 2023, Algorithm 1): one evaluation a step, fresh
    # noise between steps; for consistency-distilled models.
    _spec("lcm", stochastic=True, consistency=True),
)})

SAMPLER_NAMES: tuple[str, ...] = tuple(CATALOG)


def spec(name: str) -> SamplerSpec:
    """The sampler registered as ``name``; ValueError naming the choices otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(CATALOG)}") from None


def nfe(name: str, steps: int) -> int:
    return spec(name).nfe(steps)


def steps_run(steps: int, strength: float) -> int:
    """Steps of a ``steps``-step schedule an image-to-image job runs: the last
    floor(steps x strength) (SDEdit, Meng et al. 2022); strength 0 means no init image, every step."""
    if strength <= 0.0:
        return steps
    return min(steps, math.floor(steps * strength + 1e-9))


def effective_options(name: str, **asked: Any) -> dict[str, Any]:
    """Every option of sampler ``name`` at the value a run uses: ``asked`` where given (None
    means not given), the sampler's default otherwise. Options the sampler does not take are
    dropped, so a job's ``eta`` means nothing to UniPC."""
    defaults = spec(name).options
    return {k: (asked[k] if asked.get(k) is not None else v) for k, v in defaults.items()}
