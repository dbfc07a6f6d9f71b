"""KL-regularised VAE over premultiplied RGBA (Kingma & Welling 2014; the autoencoder of
Rombach et al. 2022 §3.1 without the GAN/perceptual terms, which this CPU cannot afford)."""

from __future__ import annotations

import torch
from torch import nn

from diffusion.nets.config import VAEConfig
from diffusion.nets.layers import Conv2d, Downsample, ResBlock, Upsample, norm


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, mode, g = cfg.channels, cfg.padding_mode, cfg.groups
        self.conv_in = Conv2d(cfg.in_channels, ch[0], 3, mode=mode)
        blocks: list[nn.Module] = []
        cin = ch[0]
        for i, cout in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout, g, mode))
                cin = cout
            if i < len(ch) - 1:
                blocks.append(Downsample(cin, mode))
        blocks.append(ResBlock(cin, cin, g, mode))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = norm(cin, g)
        self.conv_out = Conv2d(cin, 2 * cfg.latent_channels, 3, mode=mode)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_out(torch.nn.functional.silu(self.norm_out(self.blocks(self.conv_in(x)))))
        mean, logvar = h.chunk(2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, mode, g = cfg.channels[::-1], cfg.padding_mode, cfg.groups
        self.conv_in = Conv2d(cfg.latent_channels, ch[0], 3, mode=mode)
        blocks: list[nn.Module] = [ResBlock(ch[0], ch[0], g, mode)]
        cin = ch[0]
        for i, cout in enumerate(ch):
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(cin, cout, g, mode))
                cin = cout
            if i < len(ch) - 1:
                blocks.append(Upsample(cin, mode))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = norm(cin, g)
        self.conv_out = Conv2d(cin, cfg.in_channels, 3, mode=mode)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(torch.nn.functional.silu(self.norm_out(self.blocks(self.conv_in(z)))))


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,4,H,W] in [-1,1] -> posterior mean and log-variance [B,C,H/f,W/f]."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised pass (Kingma & Welling 2014 eq. 10) with caller-supplied noise, so a
        seeded run is reproducible. Returns reconstruction, mean, logvar."""
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mean, logvar


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, 1)) per element (Kingma & Welling 2014, appendix B)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
