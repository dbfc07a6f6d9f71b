"""A small torch sampler for the training sample grids: Heun's 2nd-order method on the
probability-flow ODE over Karras sigmas (EDM Algorithm 1 without churn), with
classifier-free guidance (Ho & Salimans 2022). Serving uses diffusion/samplers.py."""

from __future__ import annotations

import torch


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5: sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, then 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv**rho, torch.zeros(1, dtype=torch.float64)])


def guided(denoiser, cond: tuple, uncond: tuple, scale: float):
    """D_w = D_u + w (D_c - D_u) in one batched call (Ho & Salimans 2022, eq. 6)."""
    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        both = [torch.cat([u, c]) for u, c in zip(uncond, cond, strict=True)]
        d_u, d_c = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), *both).chunk(2)
        return d_u + scale * (d_c - d_u)
    return denoise


@torch.no_grad()
def sample_heun(denoise, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """EDM Algorithm 1 (S_churn = 0): Euler step, then Heun correction except to sigma = 0."""
    x = noise.float() * float(sigmas[0])
    ones = torch.ones(x.shape[0])
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = (x - denoise(x, ones * s)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d2 = (x_next - denoise(x_next, ones * s_next)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d2)
        x = x_next
    return x
