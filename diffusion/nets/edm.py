"""EDM preconditioning (Karras et al. 2022, Table 1 and eq. 7): the wrapped network maps a
noisy latent straight to its denoised estimate, D(x; sigma) = c_skip x + c_out F(c_in x; c_noise),
which is the project's denoiser contract denoise(x, sigma, cond) -> x0 (DESIGN §3)."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.nets.config import EDMConfig


class EDMDenoiser(nn.Module):
    def __init__(self, net: nn.Module, cfg: EDMConfig):
        super().__init__()
        self.net = net
        self.config = cfg

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x [B,C,h,w] noisy latents, sigma [B] -> x0 [B,C,h,w]."""
        sd = self.config.sigma_data
        s = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / torch.sqrt(s**2 + sd**2)
        c_in = 1.0 / torch.sqrt(s**2 + sd**2)
        c_noise = torch.log(sigma.to(torch.float32)) / 4.0
        f = self.net(c_in * x, c_noise, context, context_mask, style)
        return c_skip * x + c_out * f.to(torch.float32)


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2 (EDM Table 1): makes
    the effective training target of F unit-variance at every noise level."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_training_sigma(n: int, cfg: EDMConfig, generator: torch.Generator) -> torch.Tensor:
    """ln(sigma) ~ N(P_mean, P_std^2) (EDM Table 1, 'noise distribution')."""
    return torch.exp(cfg.p_mean + cfg.p_std * torch.randn(n, generator=generator))
