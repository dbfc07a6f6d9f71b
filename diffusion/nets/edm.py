"""EDM preconditioning (Karras et al. 2022, Table 1 and eq. 7): the wrapped network maps a
noisy latent straight to its denoised estimate, D(x; sigma) = c_skip x + c_out F(c_in x; c_noise),
which is the project's denoiser contract denoise(x, sigma, cond) -> x0 (docs/ARCHITECTURE.md,
"Numbers and seeds"). The scalings are diffusion.preconditioning's, shared with serving."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.nets.config import EDMConfig
from diffusion.preconditioning import edm_noise_label, edm_scalings


class EDMDenoiser(nn.Module):
    def __init__(self, net: nn.Module, cfg: EDMConfig):
        super().__init__()
        self.net = net
        self.config = cfg

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor, style: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        """x [B,C,h,w] noisy latents, sigma [B] -> x0 [B,C,h,w]; ``guidance`` [B] only for a
        UNet with a guidance embedding."""
        sigma = sigma.to(torch.float32)
        c_skip, c_out, c_in = edm_scalings(sigma.reshape(-1, 1, 1, 1), self.config.sigma_data)
        extra = () if guidance is None else (guidance,)
        f = self.net(c_in * x, edm_noise_label(sigma), context, context_mask, style, *extra)
        return c_skip * x + c_out * f.to(torch.float32)


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2 (EDM Table 1): makes
    the effective training target of F unit-variance at every noise level."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_training_sigma(n: int, cfg: EDMConfig, generator: torch.Generator) -> torch.Tensor:
    """ln(sigma) ~ N(P_mean, P_std^2) (EDM Table 1, 'noise distribution')."""
    return torch.exp(cfg.p_mean + cfg.p_std * torch.randn(n, generator=generator))
