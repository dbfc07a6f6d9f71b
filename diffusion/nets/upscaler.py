"""The x4 super-resolution networks (docs/MODEL.md, "The upscaler").

Both see the image through pixel-unshuffle by 4 (Shi et al. 2016), so every convolution runs at
the low resolution, and both predict the residual r = HR - up over the bicubic upsample ``up``:

* :class:`DiffusionUpscaler`: forward(sample, sigma, low_res, aug_level) -> x0 of the residual,
  the network F wrapped in EDM's preconditioning (Karras et al. 2022, eq. 7), conditioned on
  ``low_res`` (= up) by concatenation (SR3, Saharia et al. 2021) and on the noise-conditioning
  augmentation level (CDM, Ho et al. 2021) through an embedding beside sigma's.
* :class:`FastUpscaler`: forward(low_res) -> residual, the deterministic baseline (same body,
  no sigma and no augmentation input).

The body is a two-level UNet of residual blocks without normalisation layers (EDSR, Lim et al.
2017): GroupNorm statistics would depend on the crop or tile size, so a tile would not see what
the whole image sees. With no norms the nets are translation-equivariant up to borders and
work at any size that is a multiple of ``size_multiple``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion.nets.config import JsonConfig
from diffusion.nets.layers import Conv2d, FourierEmbedding
from diffusion.preconditioning import edm_noise_label, edm_scalings


@dataclass
class UpscalerConfig(JsonConfig):
    """One config for both archs; ``arch`` says which. The EDM fields are used by 'diffusion' only."""
    arch: str = "diffusion"              # "diffusion" or "cnn"
    factor: int = 4
    channels: int = 4                    # premultiplied RGBA
    width: tuple[int, ...] = (64, 128)   # body channels at LR and LR/2
    num_blocks: tuple[int, ...] = (2, 2)  # residual blocks per level on the way down (and up)
    embed_dim: int = 128
    sigma_data: float = 0.12             # std of the training residual, measured by the trainer
    sigma_min: float = 0.002
    sigma_max: float = 1.0
    rho: float = 7.0
    max_aug_level: float = 0.2           # training range of the augmentation level

    @property
    def size_multiple(self) -> int:
        """HR side multiple: the unshuffle by ``factor`` and one stride-2 level."""
        return self.factor * 2 ** (len(self.width) - 1)

    def __post_init__(self) -> None:
        if self.arch not in ("diffusion", "cnn"):
            raise ValueError(f"arch must be 'diffusion' or 'cnn', not {self.arch!r}")
        if len(self.width) != len(self.num_blocks) or not self.width:
            raise ValueError(f"width {self.width} and num_blocks {self.num_blocks} need one entry per level")


class Block(nn.Module):
    """conv-SiLU-(FiLM)-conv with an identity skip; the last conv starts at zero, so each block
    starts as the identity (Goyal et al. 2017's zero-init residual)."""

    def __init__(self, cin: int, cout: int, emb_dim: int | None):
        super().__init__()
        self.conv1 = Conv2d(cin, cout, 3)
        self.emb = nn.Linear(emb_dim, 2 * cout) if emb_dim else None
        self.conv2 = Conv2d(cout, cout, 3)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = F.silu(self.conv1(x))
        if self.emb is not None:
            scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.skip(x) + self.conv2(h)


class Body(nn.Module):
    """Pixel-unshuffle -> two-level UNet at LR resolution -> pixel-shuffle, [B,cin,H,W] -> [B,cout,H,W]."""

    def __init__(self, cfg: UpscalerConfig, cin: int, emb_dim: int | None):
        super().__init__()
        f2 = cfg.factor**2
        w = cfg.width
        self.factor = cfg.factor
        self.inp = Conv2d(cin * f2, w[0], 3)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, ch in enumerate(w):
            self.down.append(nn.ModuleList([Block(ch, ch, emb_dim) for _ in range(cfg.num_blocks[i])]))
            if i + 1 < len(w):
                self.downsample.append(Conv2d(ch, w[i + 1], 3, stride=2))
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(w) - 1)):
            self.upsample.append(Conv2d(w[i + 1], w[i], 3))
            self.up.append(nn.ModuleList([Block(2 * w[i] if j == 0 else w[i], w[i], emb_dim)
                                          for j in range(cfg.num_blocks[i])]))
        self.out = Conv2d(w[0], cfg.channels * f2, 3)
        nn.init.zeros_(self.out.weight)  # predicts zero residual at the start: bicubic
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.inp(F.pixel_unshuffle(x, self.factor))
        skips = []
        for i, blocks in enumerate(self.down):
            for b in blocks:
                h = b(h, emb)
            if i < len(self.downsample):
                skips.append(h)
                h = self.downsample[i](h)
        for up, blocks in zip(self.upsample, self.up, strict=True):
            h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = torch.cat([h, skips.pop()], dim=1)
            for b in blocks:
                h = b(h, emb)
        return F.pixel_shuffle(self.out(F.silu(h)), self.factor)


class DiffusionUpscaler(nn.Module):
    """D(sample; sigma, low_res, aug) = c_skip sample + c_out F(c_in sample, low_res; c_noise, aug)."""

    def __init__(self, cfg: UpscalerConfig):
        super().__init__()
        self.config = cfg
        e = cfg.embed_dim
        self.sigma_embed = FourierEmbedding(e)
        self.aug_embed = FourierEmbedding(e)
        self.embed = nn.Sequential(nn.Linear(2 * e, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU())
        self.body = Body(cfg, 2 * cfg.channels, e)

    def forward(self, sample: torch.Tensor, sigma: torch.Tensor, low_res: torch.Tensor,
                aug_level: torch.Tensor) -> torch.Tensor:
        sigma = sigma.to(torch.float32).reshape(-1)
        c_skip, c_out, c_in = edm_scalings(sigma.reshape(-1, 1, 1, 1), self.config.sigma_data)
        # aug_level in [0, max]: x4 puts it on the scale of c_noise, which the embedding expects.
        emb = self.embed(torch.cat([self.sigma_embed(edm_noise_label(sigma)),
                                    self.aug_embed(aug_level.to(torch.float32).reshape(-1) * 4.0)], dim=1))
        f = self.body(torch.cat([c_in * sample, low_res], dim=1), emb)
        return c_skip * sample + c_out * f.to(torch.float32)


class FastUpscaler(nn.Module):
    """The deterministic baseline: residual = F(low_res)."""

    def __init__(self, cfg: UpscalerConfig):
        super().__init__()
        self.config = cfg
        self.body = Body(cfg, cfg.channels, None)

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        return self.body(low_res, None).to(torch.float32)


def build_upscaler(cfg: UpscalerConfig) -> nn.Module:
    return DiffusionUpscaler(cfg) if cfg.arch == "diffusion" else FastUpscaler(cfg)
