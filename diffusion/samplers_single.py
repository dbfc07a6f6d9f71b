"""Single-step samplers: DDPM ancestral, DDIM, Euler, Euler ancestral and Heun.

All work in the VE parameterisation ``x = x0 + sigma * eps`` (Karras et al. 2022, "EDM"), where
the probability-flow ODE is ``dx/dsigma = (x - D(x, sigma)) / sigma`` (EDM eq. 3 with
s(t)=1, sigma(t)=t).  In these coordinates DDIM with eta=0 *is* the Euler method on that ODE
(EDM §3), and DDPM's posterior step is DDIM with eta=1; they are kept as separate entries because
clients ask for them by name and their options differ.  See :mod:`diffusion.sampling` for the
call convention.
"""

from __future__ import annotations

import math

import numpy as np

from diffusion.noise import NoiseFn
from diffusion.sampling import Callback, Denoiser, check_sigmas, emit, lazy_noise, sigma_vector

__all__ = ["sample_ddim", "sample_ddpm", "sample_euler", "sample_euler_ancestral", "sample_heun"]


def _posterior_std(sigma: float, sigma_next: float) -> float:
    """Std of q(x_s | x_t, x0) in VE form: sigma_s * sqrt(1 - sigma_s²/sigma_t²) (DDPM eq. 7)."""
    return sigma_next * math.sqrt(max(0.0, 1.0 - (sigma_next / sigma) ** 2))


def sample_ddpm(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
    variance: str = "posterior",
) -> np.ndarray:
    """Ancestral sampling from the DDPM posterior (Ho et al. 2020, eqs. 6-7 and Algorithm 2).

    ``variance``: "posterior" (beta-tilde, the default) or "beta", Ho et al.'s upper bound
    ``sigma_t² = beta_t`` written in VE form for the pair (sigma, sigma_next).  The mean is the
    posterior mean ``x0 + (sigma_next/sigma)² (x - x0)`` in both cases; the last step adds no noise.
    """
    if variance not in ("posterior", "beta"):
        raise ValueError("variance must be 'posterior' or 'beta'")
    sigmas = check_sigmas(sigmas)
    noise = lazy_noise(noise, x)
    steps = sigmas.size - 1
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma_vector(x, sigma))
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        x = denoised + (sigma_next / sigma) ** 2 * (x - denoised)
        if sigma_next > 0:
            if variance == "posterior":
                std = _posterior_std(sigma, sigma_next)
            else:
                # beta_t = 1 - ᾱ_t/ᾱ_s, divided by ᾱ_s to move from VP to VE coordinates.
                std = math.sqrt((sigma**2 - sigma_next**2) * (1 + sigma_next**2) / (1 + sigma**2))
            x = x + std * noise(i)
    return x


def sample_ddim(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
    eta: float = 0.0,
) -> np.ndarray:
    """DDIM (Song, Meng & Ermon 2021, eq. 12) with stochasticity ``eta`` (0: deterministic).

    ``sigma_eta = eta * posterior std`` (their eq. 16) in VE form; eta=1 is DDPM ancestral.
    """
    sigmas = check_sigmas(sigmas)
    noise = lazy_noise(noise, x) if eta > 0 else None
    steps = sigmas.size - 1
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma_vector(x, sigma))
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        eps = (x - denoised) / sigma
        sigma_eta = eta * _posterior_std(sigma, sigma_next)
        x = denoised + math.sqrt(max(0.0, sigma_next**2 - sigma_eta**2)) * eps
        if sigma_eta > 0 and noise is not None:
            x = x + sigma_eta * noise(i)
    return x


def _churn(
    x: np.ndarray,
    sigma: float,
    i: int,
    steps: int,
    noise,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
) -> tuple[np.ndarray, float]:
    """EDM Algorithm 2, lines 4-6: raise sigma by gamma and add the matching fresh noise."""
    gamma = min(s_churn / steps, math.sqrt(2.0) - 1.0) if s_tmin <= sigma <= s_tmax else 0.0
    if gamma <= 0:
        return x, sigma
    sigma_hat = sigma * (1.0 + gamma)
    x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * noise(i)
    return x, sigma_hat


def sample_euler(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> np.ndarray:
    """Euler on the probability-flow ODE; with ``s_churn > 0`` the stochastic EDM variant.

    Churn options as in EDM Algorithm 2 (S_churn, S_tmin, S_tmax, S_noise); defaults: none.
    """
    sigmas = check_sigmas(sigmas)
    noise = lazy_noise(noise, x) if s_churn > 0 else None
    steps = sigmas.size - 1
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if noise is not None:
            x, sigma = _churn(x, sigma, i, steps, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = denoise(x, sigma_vector(x, sigma))
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        d = (x - denoised) / sigma
        x = x + (sigma_next - sigma) * d
    return x


def sample_euler_ancestral(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> np.ndarray:
    """Euler step to sigma_down, then fresh noise of std sigma_up (k-diffusion's ancestral split).

    ``sigma_up = min(sigma_next, eta * posterior std)``, ``sigma_down² = sigma_next² - sigma_up²``
    so the marginal noise level is sigma_next; eta=1 is the DDPM posterior.  ``s_noise`` scales
    the added noise (EDM's S_noise).
    """
    sigmas = check_sigmas(sigmas)
    noise = lazy_noise(noise, x)
    steps = sigmas.size - 1
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma_vector(x, sigma))
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        sigma_up = min(sigma_next, eta * _posterior_std(sigma, sigma_next))
        sigma_down = math.sqrt(max(0.0, sigma_next**2 - sigma_up**2))
        x = x + (sigma_down - sigma) * (x - denoised) / sigma
        if sigma_up > 0:
            x = x + sigma_up * s_noise * noise(i)
    return x


def sample_heun(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> np.ndarray:
    """Heun's 2nd-order method, EDM Algorithm 2 (deterministic Algorithm 1 when s_churn=0).

    Two denoiser evaluations per step except the last (to sigma=0), which is an Euler step
    (Algorithm 1, line 9): ``2 * steps - 1`` evaluations in all.
    """
    sigmas = check_sigmas(sigmas)
    noise = lazy_noise(noise, x) if s_churn > 0 else None
    steps = sigmas.size - 1
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if noise is not None:
            x, sigma = _churn(x, sigma, i, steps, noise, s_churn, s_tmin, s_tmax, s_noise)
        denoised = denoise(x, sigma_vector(x, sigma))
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        d = (x - denoised) / sigma
        x_next = x + (sigma_next - sigma) * d
        if sigma_next > 0:
            # Algorithm 2, lines 9-11: trapezoidal correction with the slope at (x_next, sigma_next).
            d_next = (x_next - denoise(x_next, sigma_vector(x_next, sigma_next))) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        x = x_next
    return x
