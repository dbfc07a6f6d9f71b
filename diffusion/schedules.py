"""Noise schedules in the variance-exploding (VE) parameterisation of Karras et al. 2022 (EDM).

A discrete-time (DDPM) network is trained on ``alphas_cumprod`` (written ᾱ_t); the same
marginals in VE form are ``x = x0 + sigma * eps`` with ``sigma_t = sqrt((1 - ᾱ_t) / ᾱ_t)``
(EDM Table 1, "VP"; Song et al. 2021, eq. 29).  Samplers work on decreasing sigma arrays
that end in 0; the functions here build those arrays and map sigma back to the network's
(possibly fractional) timestep.

Every function is pure and returns float64 numpy arrays.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BETA_SCHEDULES",
    "SPACINGS",
    "alphas_cumprod_from_betas",
    "betas_cosine",
    "betas_for",
    "betas_linear",
    "betas_scaled_linear",
    "exponential_sigmas",
    "karras_sigmas",
    "sampling_sigmas",
    "sigma_to_t",
    "sigmas_to_alphas_cumprod",
    "t_to_sigma",
    "timestep_sigmas",
    "timesteps_for",
    "vp_sigmas",
]


# ---------------------------------------------------------------------------------------------
# Training (beta) schedules
# ---------------------------------------------------------------------------------------------


def betas_linear(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> np.ndarray:
    """Linear betas of Ho et al. 2020 (DDPM), §4."""
    return np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)


def betas_scaled_linear(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> np.ndarray:
    """Linear in sqrt(beta), the schedule of latent diffusion (Rombach et al. 2022)."""
    return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_train_timesteps, dtype=np.float64) ** 2


def betas_cosine(num_train_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine schedule of Nichol & Dhariwal 2021, eq. 17; betas clipped at ``max_beta`` as in §3.2."""

    def f(t: np.ndarray) -> np.ndarray:
        return np.cos((t / num_train_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    t = np.arange(num_train_timesteps, dtype=np.float64)
    return np.minimum(1.0 - f(t + 1) / f(t), max_beta)


BETA_SCHEDULES = {
    "linear": betas_linear,
    "scaled_linear": betas_scaled_linear,
    "cosine": betas_cosine,
}


def betas_for(name: str, num_train_timesteps: int = 1000, **kwargs: float) -> np.ndarray:
    """Betas of the named schedule ("linear", "scaled_linear", "cosine"); kwargs go to that function."""
    try:
        fn = BETA_SCHEDULES[name]
    except KeyError:
        raise ValueError(
            f"unknown beta schedule {name!r}; expected one of {sorted(BETA_SCHEDULES)}"
        ) from None
    return fn(num_train_timesteps, **kwargs)


def alphas_cumprod_from_betas(betas: np.ndarray) -> np.ndarray:
    """ᾱ_t = prod_{s<=t} (1 - beta_s) (Ho et al. 2020, eq. 4)."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def vp_sigmas(alphas_cumprod: np.ndarray) -> np.ndarray:
    """VE noise levels of a VP model: sigma_t = sqrt((1 - ᾱ_t) / ᾱ_t), increasing in t."""
    a = np.asarray(alphas_cumprod, dtype=np.float64)
    return np.sqrt((1.0 - a) / a)


def sigmas_to_alphas_cumprod(sigmas: np.ndarray) -> np.ndarray:
    """Inverse of :func:`vp_sigmas`: ᾱ = 1 / (1 + sigma²)."""
    s = np.asarray(sigmas, dtype=np.float64)
    return 1.0 / (1.0 + s * s)


# ---------------------------------------------------------------------------------------------
# sigma <-> timestep of a discrete-time network
# ---------------------------------------------------------------------------------------------


def sigma_to_t(sigma: np.ndarray | float, train_sigmas: np.ndarray) -> np.ndarray:
    """Fractional timestep of ``sigma``: linear interpolation of t in log(sigma).

    ``train_sigmas`` is the increasing array of :func:`vp_sigmas` (index = timestep).  Values
    outside the trained range clamp to 0 or T-1.  As in k-diffusion's ``DiscreteSchedule``, log-sigma
    interpolation lets a discrete-time network serve any continuous sigma schedule.
    """
    log_train = np.log(np.asarray(train_sigmas, dtype=np.float64))
    s = np.asarray(sigma, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_s = np.log(s)
    t = np.interp(log_s, log_train, np.arange(log_train.size, dtype=np.float64))
    return t


def t_to_sigma(t: np.ndarray | float, train_sigmas: np.ndarray) -> np.ndarray:
    """Sigma of a (fractional) timestep, interpolating log(sigma) linearly between integer steps."""
    log_train = np.log(np.asarray(train_sigmas, dtype=np.float64))
    t = np.asarray(t, dtype=np.float64)
    return np.exp(np.interp(t, np.arange(log_train.size, dtype=np.float64), log_train))


# ---------------------------------------------------------------------------------------------
# Sampling schedules: decreasing float64 sigmas ending in 0
# ---------------------------------------------------------------------------------------------

SPACINGS = ("linspace", "trailing", "leading")

def timesteps_for(
    num_steps: int, num_train_timesteps: int = 1000, spacing: str = "linspace", steps_offset: int = 0
) -> np.ndarray:
    """Training timesteps visited by an ``num_steps`` sampler, decreasing (Lin et al. 2023, Table 2).

    "linspace": evenly spaced from T-1 down to 0 (rounded); "trailing": ``round(T - k*T/n) - 1``,
    which always starts at T-1; "leading": ``k * (T // n) + steps_offset``, the DDIM/LDM original
    that never visits the last timesteps.
    """
    n, T = int(num_steps), int(num_train_timesteps)
    if n < 1 or n > T:
        raise ValueError(f"num_steps must be in [1, {T}], got {n}")
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, n + 1).round()[::-1][:-1]
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / n)) - 1
    elif spacing == "leading":
        ts = (np.arange(n) * (T // n)).round()[::-1] + steps_offset
    else:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {SPACINGS}")
    return np.clip(ts, 0, T - 1).astype(np.int64)


def _append_zero(sigmas: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(sigmas, dtype=np.float64), np.zeros(1)])


def timestep_sigmas(
    train_sigmas: np.ndarray, num_steps: int, spacing: str = "linspace", steps_offset: int = 0
) -> np.ndarray:
    """Sigmas of the respaced training timesteps (see :func:`timesteps_for`), then a final 0."""
    train_sigmas = np.asarray(train_sigmas, dtype=np.float64)
    ts = timesteps_for(num_steps, train_sigmas.size, spacing, steps_offset)
    return _append_zero(train_sigmas[ts])


def karras_sigmas(
    num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> np.ndarray:
    """EDM eq. 5: sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, then 0."""
    n = int(num_steps)
    if n < 1:
        raise ValueError("num_steps must be >= 1")
    ramp = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> np.ndarray:
    """Evenly spaced in log(sigma) (uniform steps in the DPM-Solver half-log-SNR lambda), then 0."""
    n = int(num_steps)
    if n < 1:
        raise ValueError("num_steps must be >= 1")
    return _append_zero(np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n)))


def sampling_sigmas(
    kind: str,
    num_steps: int,
    train_sigmas: np.ndarray | None = None,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    steps_offset: int = 0,
) -> np.ndarray:
    """One entry point for every spacing.

    ``kind`` is "linspace", "trailing", "leading" (need ``train_sigmas``), "karras" or
    "exponential" (``sigma_min``/``sigma_max`` default to the trained range when ``train_sigmas``
    is given, else to EDM's 0.002 / 80).
    """
    if kind in SPACINGS:
        if train_sigmas is None:
            raise ValueError(f"spacing {kind!r} needs train_sigmas")
        return timestep_sigmas(train_sigmas, num_steps, kind, steps_offset)
    if train_sigmas is not None:
        sigma_min = float(train_sigmas[0]) if sigma_min is None else sigma_min
        sigma_max = float(train_sigmas[-1]) if sigma_max is None else sigma_max
    sigma_min = 0.002 if sigma_min is None else sigma_min
    sigma_max = 80.0 if sigma_max is None else sigma_max
    if kind == "karras":
        return karras_sigmas(num_steps, sigma_min, sigma_max, rho)
    if kind == "exponential":
        return exponential_sigmas(num_steps, sigma_min, sigma_max)
    raise ValueError(f"unknown sigma spacing {kind!r}")
