"""The consistency function f(x, sigma) of a distilled student (Song et al. 2023, §3 "Parameterization").

    f(x, sigma) = c_skip(sigma) x + (1 - c_skip(sigma)) D(x; sigma, w),
    c_skip(sigma) = eps^2 / ((sigma - sigma_min)^2 + eps^2),  eps = sigma_min

so f(x, sigma_min) = x exactly (the boundary condition) while above a few sigma_min f is the
EDM denoiser D itself: a student initialised from its teacher starts as the teacher's x0. The
weights c_skip and 1 - c_skip sum to one (unlike the CM paper's c_out, meant for the raw network
output): near the boundary x and D(x) are both the clean sample, so the mix stays unbiased.
The wrapper is what a fast model exports as its ``x0`` output (docs/MODEL.md)."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.nets.edm import EDMDenoiser


def boundary_skip(sigma: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """c_skip(sigma) above; 1 at sigma_min, below 0.01 from sigma = 11 sigma_min on."""
    return sigma_min**2 / ((sigma - sigma_min) ** 2 + sigma_min**2)


class ConsistencyDenoiser(nn.Module):
    """f(x, sigma, text, style, w) -> x0 over an :class:`EDMDenoiser` with a guidance embedding."""

    def __init__(self, denoiser: EDMDenoiser, sigma_min: float):
        super().__init__()
        self.denoiser = denoiser
        self.sigma_min = float(sigma_min)

    @property
    def net(self) -> nn.Module:
        return self.denoiser.net

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor,
                style: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        sigma = sigma.to(torch.float32)
        skip = boundary_skip(sigma, self.sigma_min).reshape(-1, 1, 1, 1)
        d = self.denoiser(x, sigma, context, context_mask, style, guidance)
        return skip * x + (1.0 - skip) * d
