"""Text- and style-conditioned latent UNet F_theta(c_in * x, c_noise, context, style).

Conditioning: c_noise -> sinusoidal embedding -> MLP, plus a learned style embedding (style 0
is "no style"), drives every ResBlock (adaptive GroupNorm); text token states enter through
cross-attention at the levels flagged in ``config.attention`` (Rombach et al. 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffusion.nets.config import UNetConfig
from diffusion.nets.layers import (
    Conv2d,
    CrossAttention,
    Downsample,
    FourierEmbedding,
    ResBlock,
    SelfAttention,
    Upsample,
    norm,
)


class Block(nn.Module):
    """ResBlock, then optional self-attention and cross-attention to the text."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig, attend: bool):
        super().__init__()
        self.res = ResBlock(cin, cout, cfg.groups, cfg.padding_mode, cfg.embed_dim, cfg.dropout)
        self.attend = attend
        if attend:
            self.self_attn = SelfAttention(cout, cfg.heads, cfg.groups)
            self.cross_attn = CrossAttention(cout, cfg.embed_dim, cfg.heads, cfg.groups)

    def forward(self, x, emb, context, bias):
        x = self.res(x, emb)
        if self.attend:
            x = self.cross_attn(self.self_attn(x), context, bias)
        return x


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        ch, mode, e = cfg.channels, cfg.padding_mode, cfg.embed_dim
        self.noise_embed = FourierEmbedding(ch[0])
        self.noise_mlp = nn.Sequential(nn.Linear(ch[0], e), nn.SiLU(), nn.Linear(e, e))
        self.style_embed = nn.Embedding(cfg.num_styles, e)
        if cfg.guidance_embed:
            self.guidance_embed = FourierEmbedding(ch[0])
            self.guidance_mlp = nn.Sequential(nn.Linear(ch[0], e), nn.SiLU(), nn.Linear(e, e))
            # Zero output layer: a student initialised from its teacher starts as the teacher's
            # conditional branch at every w (LCM, Luo et al. 2023).
            nn.init.zeros_(self.guidance_mlp[2].weight)
            nn.init.zeros_(self.guidance_mlp[2].bias)
        # Token states are projected once to embed_dim and shared by all cross-attentions.
        self.context_norm = nn.LayerNorm(cfg.context_dim)
        self.context_proj = nn.Linear(cfg.context_dim, e)
        self.conv_in = Conv2d(cfg.in_channels, ch[0], 3, mode=mode)

        self.down = nn.ModuleList()
        skips = [ch[0]]
        cin = ch[0]
        for i, cout in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                self.down.append(Block(cin, cout, cfg, cfg.attention[i]))
                cin = cout
                skips.append(cin)
            if i < len(ch) - 1:
                self.down.append(Downsample(cin, mode))
                skips.append(cin)
        self.mid1 = Block(cin, cin, cfg, True)
        self.mid2 = Block(cin, cin, cfg, False)
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(Block(cin + skips.pop(), ch[i], cfg, cfg.attention[i]))
                cin = ch[i]
            if i > 0:
                self.up.append(Upsample(cin, mode))
        self.norm_out = norm(cin, cfg.groups)
        self.conv_out = Conv2d(cin, cfg.out_channels, 3, mode=mode)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor, style: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        """x [B,C,h,w]; c_noise [B]; context [B,L,384] token states; context_mask [B,L] (1 = real
        token); style [B] int64; guidance [B] float, the scale w (only with ``guidance_embed``).
        Returns F_theta [B,C,h,w]."""
        emb = self.noise_mlp(self.noise_embed(c_noise)) + self.style_embed(style)
        if self.config.guidance_embed:
            if guidance is None:
                raise ValueError("this UNet embeds the guidance scale: pass guidance [B]")
            # w / 4 puts the guidance range (about 1..15) on the same scale the noise label spans.
            emb = emb + self.guidance_mlp(self.guidance_embed(guidance.to(torch.float32) / 4.0))
        ctx = self.context_proj(self.context_norm(context))
        bias = ((1.0 - context_mask.to(x.dtype)) * -1e4)[:, None, None, :]
        h = self.conv_in(x)
        hs = [h]
        for m in self.down:
            h = m(h, emb, ctx, bias) if isinstance(m, Block) else m(h)
            hs.append(h)
        h = self.mid2(self.mid1(h, emb, ctx, bias), emb, ctx, bias)
        for m in self.up:
            if isinstance(m, Block):
                h = m(torch.cat([h, hs.pop()], dim=1), emb, ctx, bias)
            else:
                h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))
