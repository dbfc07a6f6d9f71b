"""Building blocks shared by the VAE and the UNet."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def pad2d(x: torch.Tensor, p: int, mode: str) -> torch.Tensor:
    """Zero or circular padding with concatenations only, so ONNX export needs no Pad(wrap).
    Circular padding makes every convolution see a torus: outputs tile seamlessly."""
    if p == 0:
        return x
    if mode == "circular":
        x = torch.cat([x[..., -p:, :], x, x[..., :p, :]], dim=-2)
        return torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)
    return F.pad(x, (p, p, p, p))


class Conv2d(nn.Conv2d):
    """A k x k 'same' convolution whose padding mode can be switched after training."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, mode: str = "zeros"):
        super().__init__(cin, cout, k, stride=stride, padding=0)
        self.pad = k // 2
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad2d(x, self.pad, self.mode))


def set_padding_mode(module: nn.Module, mode: str) -> None:
    """Switch every convolution between 'zeros' and 'circular' (seamless tiling)."""
    if mode not in ("zeros", "circular"):
        raise ValueError(f"padding mode must be 'zeros' or 'circular', not {mode!r}")
    for m in module.modules():
        if isinstance(m, Conv2d):
            m.mode = mode


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    """3x3 convolution, batch norm (Ioffe & Szegedy 2015), ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def vgg_stages(in_channels: int, channels: tuple[int, ...]) -> list[nn.Module]:
    """VGG-style stages (Simonyan & Zisserman 2015): two conv_bn a stage, 2x max pooling between."""
    layers: list[nn.Module] = []
    cin = in_channels
    for i, c in enumerate(channels):
        if i > 0:
            layers.append(nn.MaxPool2d(2))
        layers += conv_bn(cin, c) + conv_bn(c, c)
        cin = c
    return layers


def norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018) with the largest group count <= ``groups`` dividing ``channels``."""
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


class Downsample(nn.Module):
    def __init__(self, ch: int, mode: str):
        super().__init__()
        self.conv = Conv2d(ch, ch, 3, stride=2, mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int, mode: str):
        super().__init__()
        self.conv = Conv2d(ch, ch, 3, mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016); with ``emb_dim`` the embedding sets a
    per-channel scale and shift after the second norm (FiLM / adaptive GroupNorm, Dhariwal &
    Nichol 2021 §3)."""

    def __init__(self, cin: int, cout: int, groups: int, mode: str, emb_dim: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = norm(cin, groups)
        self.conv1 = Conv2d(cin, cout, 3, mode=mode)
        self.norm2 = norm(cout, groups)
        self.emb = nn.Linear(emb_dim, 2 * cout) if emb_dim else None
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv2d(cout, cout, 3, mode=mode)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.emb is not None and emb is not None:
            scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, eq. 1), written out in
    matmuls so it exports to any ONNX opset. q [B,N,C], k/v [B,M,C], bias [B,1,1,M]."""
    b, n, c = q.shape
    m = k.shape[1]
    d = c // heads
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, m, heads, d).transpose(1, 2)
    v = v.reshape(b, m, heads, d).transpose(1, 2)
    w = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
    if bias is not None:
        w = w + bias
    out = torch.matmul(torch.softmax(w, dim=-1), v)
    return out.transpose(1, 2).reshape(b, n, c)


class SelfAttention(nn.Module):
    def __init__(self, ch: int, heads: int, groups: int):
        super().__init__()
        self.norm = norm(ch, groups)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.out = nn.Linear(ch, ch)
        self.heads = heads
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(t).chunk(3, dim=-1)
        o = self.out(attention(q, k, v, self.heads))
        return x + o.transpose(1, 2).reshape(b, c, h, w)


class CrossAttention(nn.Module):
    """Image tokens attend to text token states (Rombach et al. 2022, §3.3); padded tokens are
    masked with a large negative bias."""

    def __init__(self, ch: int, context_dim: int, heads: int, groups: int):
        super().__init__()
        self.norm = norm(ch, groups)
        self.q = nn.Linear(ch, ch)
        self.kv = nn.Linear(context_dim, 2 * ch)
        self.out = nn.Linear(ch, ch)
        self.heads = heads
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)
        k, v = self.kv(context).chunk(2, dim=-1)
        o = self.out(attention(self.q(t), k, v, self.heads, bias))
        return x + o.transpose(1, 2).reshape(b, c, h, w)


class FourierEmbedding(nn.Module):
    """Sinusoidal embedding of the scalar noise level c_noise (Vaswani et al. 2017 §3.5;
    Ho et al. 2020 use it for t, EDM for ln(sigma)/4)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        # c_noise = ln(sigma)/4 spans about 4 units over the schedule; x250 maps it onto the
        # ~1000-step range the DDPM timestep embedding was designed for.
        a = (c_noise.float() * 250.0)[:, None] * self.freqs[None, :]
        return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)
