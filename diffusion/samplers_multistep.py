"""Multistep exponential-integrator samplers: DPM-Solver++(2M), its SDE variant, and UniPC.

All use data prediction (the denoiser's x0) and the half-log-SNR time lambda = -log(sigma)
(Lu et al. 2022b, "DPM-Solver++", §4, in VE form where alpha_t = 1).  One denoiser evaluation
per step; earlier x0 estimates are kept in local variables only.  The step into sigma=0 is
first order (it returns the last x0 estimate), as the solvers' "lower order final" rule.
"""

from __future__ import annotations

import math

import numpy as np

from diffusion.noise import NoiseFn
from diffusion.sampling import Callback, Denoiser, check_sigmas, emit, lazy_noise, sigma_vector

__all__ = ["sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_unipc"]


def sample_dpmpp_2m(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
) -> np.ndarray:
    """DPM-Solver++(2M), Lu et al. 2022b, Algorithm 2 (multistep, second order).

    x_{i+1} = (sigma_{i+1}/sigma_i) x_i - expm1(-h_i) D_i, with D_i = (1 + 1/(2 r_i)) x0_i -
    1/(2 r_i) x0_{i-1}, h_i = lambda_{i+1} - lambda_i, r_i = h_{i-1} / h_i.  Deterministic;
    ``noise`` is accepted for the common signature and ignored.
    """
    del noise
    sigmas = check_sigmas(sigmas)
    steps = sigmas.size - 1
    old_denoised: np.ndarray | None = None
    h_last = 0.0
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma_vector(x, sigma))
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        if sigma_next == 0:
            x = denoised
            break
        h = math.log(sigma) - math.log(sigma_next)
        if old_denoised is None:
            d = denoised  # first step: DPM-Solver++(1), i.e. DDIM
        else:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (sigma_next / sigma) * x - math.expm1(-h) * d
        old_denoised, h_last = denoised, h
    return x


def sample_dpmpp_2m_sde(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
) -> np.ndarray:
    """SDE-DPM-Solver++(2M), Lu et al. 2022b, §5 / Appendix (multistep, second order).

    First-order part with stochasticity ``eta`` (1: the reverse SDE, 0: DPM-Solver++(2M)):
    x' = (sigma'/sigma) e^{-eta h} x + (1 - e^{-(1+eta) h}) x0 + sigma' sqrt(1 - e^{-2 eta h}) s_noise z.
    The second-order term uses the previous x0 estimate with the "midpoint" coefficient
    (1 - e^{-(1+eta)h}) / 2 or the "heun" one, 1 - (1 - e^{-(1+eta)h}) / ((1+eta)h).
    """
    if solver_type not in ("midpoint", "heun"):
        raise ValueError("solver_type must be 'midpoint' or 'heun'")
    sigmas = check_sigmas(sigmas)
    noise = lazy_noise(noise, x) if eta > 0 else None
    steps = sigmas.size - 1
    old_denoised: np.ndarray | None = None
    h_last = 0.0
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma_vector(x, sigma))
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        if sigma_next == 0:
            x = denoised
            break
        h = math.log(sigma) - math.log(sigma_next)
        eta_h = eta * h
        coef = -math.expm1(-h - eta_h)  # 1 - e^{-(1+eta) h}
        x = (sigma_next / sigma) * math.exp(-eta_h) * x + coef * denoised
        if old_denoised is not None:
            r = h_last / h
            if solver_type == "midpoint":
                x = x + 0.5 * coef * (1 / r) * (denoised - old_denoised)
            else:
                x = x + (1 - coef / (h + eta_h)) * (1 / r) * (denoised - old_denoised)
        if noise is not None:
            x = x + sigma_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise * noise(i)
        old_denoised, h_last = denoised, h
    return x


def _unipc_coefficients(
    h: float, rks: list[float], order: int, variant: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """Linear system of UniPC (Zhao et al. 2023, Theorem 3.1 / Algorithm 1) for data prediction.

    Returns (R, b, B_h): rows R[k] = r^k over (r_1..r_{p-1}, 1), right-hand side
    b_k = k! phi_{k+1}(h) h / B_h, with B(h) = h ("bh1") or e^{h} - 1 ("bh2") in hh = -h.
    """
    hh = -h
    h_phi_1 = math.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = hh if variant == "bh1" else math.expm1(hh)
    r_all = np.array([*rks, 1.0], dtype=np.float64)
    rows, rhs = [], []
    factorial = 1
    for k in range(1, order + 1):
        rows.append(r_all ** (k - 1))
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    return np.stack(rows), np.array(rhs), b_h


def sample_unipc(
    denoise: Denoiser,
    x: np.ndarray,
    sigmas: np.ndarray,
    *,
    noise: NoiseFn | None = None,
    callback: Callback | None = None,
    order: int = 2,
    variant: str = "bh2",
    corrector: bool = True,
) -> np.ndarray:
    """UniPC: multistep UniP-p predictor + UniC corrector, Zhao et al. 2023 (Algorithms 2 and 3).

    ``order`` 1..3 (warm-up and the final steps use lower orders); ``variant`` "bh1" (B(h)=h,
    the paper's choice for unconditional sampling at very few steps) or "bh2" (B(h)=e^h-1,
    for guided sampling; default).  The corrector re-uses the denoiser evaluation of the next
    step, so it costs no extra evaluation.  Deterministic; ``noise`` is ignored.
    """
    del noise
    if order not in (1, 2, 3):
        raise ValueError("order must be 1, 2 or 3")
    if variant not in ("bh1", "bh2"):
        raise ValueError("variant must be 'bh1' or 'bh2'")
    sigmas = check_sigmas(sigmas)
    lambdas = -np.log(np.maximum(sigmas, np.finfo(np.float64).tiny))
    steps = sigmas.size - 1
    history: list[tuple[float, np.ndarray]] = []  # (lambda, x0 estimate), newest last
    x_prev: np.ndarray | None = None  # sample the last predictor started from
    last_order = 0
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma_vector(x, sigma))
        if corrector and x_prev is not None:
            # UniC-p: correct x_i with the new evaluation at (predicted) x_i (Algorithm 3).
            x = _unic(x_prev, history, denoised, float(sigmas[i - 1]), sigma, lambdas[i], last_order, variant)
        emit(callback, i, steps, sigma, sigma_next, x, denoised)
        history.append((float(lambdas[i]), denoised))
        del history[: max(0, len(history) - order)]
        if sigma_next == 0:
            x = denoised
            break
        this_order = min(order, i + 1, steps - i)
        x_prev = x
        x = _unip(x, history, sigma, sigma_next, float(lambdas[i + 1]), this_order, variant)
        last_order = this_order
    return x


def _rks_d1s(history: list[tuple[float, np.ndarray]], h: float, order: int):
    lam0, m0 = history[-1]
    rks, d1s = [], []
    for k in range(1, order):
        lam_k, m_k = history[-1 - k]
        r = (lam_k - lam0) / h
        rks.append(r)
        d1s.append((m_k - m0) / r)
    return rks, d1s


def _unip(x, history, sigma, sigma_next, lam_next, order, variant):
    """UniP-p predictor (Zhao et al. 2023, eq. 7 with data prediction)."""
    lam0, m0 = history[-1]
    h = lam_next - lam0
    rks, d1s = _rks_d1s(history, h, order)
    R, b, b_h = _unipc_coefficients(h, rks, order, variant)
    x_t = (sigma_next / sigma) * x - math.expm1(-h) * m0
    if order >= 2:
        rhos = np.array([0.5]) if order == 2 else np.linalg.solve(R[:-1, :-1], b[:-1])
        x_t = x_t - b_h * sum(rho * d for rho, d in zip(rhos, d1s, strict=True))
    return x_t


def _unic(x_prev, history, m_t, sigma_prev, sigma, lam_t, order, variant):
    """UniC-p corrector: x_t recomputed from x_prev with the fresh evaluation m_t included."""
    lam0, m0 = history[-1]
    h = lam_t - lam0
    rks, d1s = _rks_d1s(history, h, order)
    R, b, b_h = _unipc_coefficients(h, rks, order, variant)
    rhos = np.array([0.5]) if order == 1 else np.linalg.solve(R, b)
    x_t = (sigma / sigma_prev) * x_prev - math.expm1(-h) * m0
    corr = sum((rho * d for rho, d in zip(rhos[:-1], d1s, strict=True)), start=np.zeros_like(m0))
    return x_t - b_h * (corr + rhos[-1] * (m_t - m0))
