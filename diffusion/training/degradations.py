"""Low-resolution inputs for upscaler training (docs/MODEL.md, "The upscaler").

The main case is exactly the base model's data: HR box-downsampled by 4 in premultiplied space
(diffusion.resample.downsample). A modest share of each batch is degraded further, Real-ESRGAN's
idea (Wang et al. 2021) at a small scale, so the upscaler also copes with the base model's soft
outputs and with studios' real images: a Gaussian blur before downsampling, Gaussian noise, and
JPEG on the colour (premultiplied RGB, alpha kept). Every step keeps the premultiplied invariant
0 <= rgb <= alpha (in [-1, 1]: -1 <= rgb <= alpha).

All randomness comes from a torch.Generator (CPU), so a resumed run draws the same inputs; the
tensor work runs on the images' device. JPEG needs a codec, so it comes from a pool made once
on the CPU: one JPEG round trip of every training image's clean LR at a random quality.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from diffusion.nets.config import JsonConfig
from diffusion.resample import downsample_torch


@dataclass
class DegradationConfig(JsonConfig):
    factor: int = 4
    p_blur: float = 0.25
    blur_sigma: tuple[float, float] = (0.4, 1.5)      # HR pixels, before downsampling
    p_noise: float = 0.25
    noise_std: tuple[float, float] = (1.0, 10.0)      # /255 of the full range, i.e. x2/255 in [-1, 1]
    p_jpeg: float = 0.15
    jpeg_quality: tuple[int, int] = (40, 95)
    aug_p_zero: float = 0.3                            # share of batches' rows trained at aug_level 0


def premultiplied_clamp(x: torch.Tensor) -> torch.Tensor:
    """Clip to [-1, 1] and colour to at most alpha, channel-first [B,4,H,W]."""
    x = x.clamp(-1.0, 1.0)
    alpha = x[:, 3:4]
    return torch.cat([torch.minimum(x[:, :3], alpha), alpha], dim=1)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per row of the batch. Non-negative weights summing to 1
    keep rgb <= alpha; borders repeat the edge pixel."""
    b, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None, :] / sigma.to(x)[:, None]) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)      # [b*c, 2r+1]
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def jpeg_roundtrip(lr: np.ndarray, quality: int) -> np.ndarray:
    """Premultiplied RGBA uint8 [h, w, 4] -> the same after JPEG of its RGB; alpha unchanged."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(lr[..., :3])).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.concatenate([np.minimum(rgb, lr[..., 3:4]), lr[..., 3:4]], axis=-1)


def jpeg_pool(hr: np.ndarray, cfg: DegradationConfig, seed: int) -> np.ndarray:
    """The JPEG pool: clean LR of every HR image (uint8, rounded as the base data were), JPEG'd at a
    quality drawn from ``cfg.jpeg_quality`` with ``seed``. uint8 [N, h, w, 4]."""
    rng = np.random.default_rng(seed)
    f = cfg.factor
    n, h, w, _ = hr.shape
    lr = hr.reshape(n, h // f, f, w // f, f, 4).mean(axis=(2, 4))
    lr = np.clip(np.rint(lr), 0, 255).astype(np.uint8)
    lr[..., :3] = np.minimum(lr[..., :3], lr[..., 3:4])
    q = rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1, size=n)
    return np.stack([jpeg_roundtrip(lr[i], int(q[i])) for i in range(n)])


def degrade(hr: torch.Tensor, jpeg_lr: torch.Tensor | None, cfg: DegradationConfig, g: torch.Generator,
            dg: torch.Generator | None = None) -> torch.Tensor:
    """HR [B,4,H,W] in [-1,1] (and its pooled JPEG LR [B,4,h,w] or None) -> LR [B,4,h,w].

    Row by row: blur (p_blur) -> box downsample -> JPEG from the pool (p_jpeg, rows not blurred)
    -> Gaussian noise (p_noise) -> premultiplied clamp. Per-row choices come from ``g`` (CPU);
    the noise image from ``dg`` on the images' device (``g`` when None)."""
    b, dev = hr.shape[0], hr.device
    u = torch.rand(b, 3, generator=g)
    sig = cfg.blur_sigma[0] + (cfg.blur_sigma[1] - cfg.blur_sigma[0]) * torch.rand(b, generator=g)
    std = (cfg.noise_std[0] + (cfg.noise_std[1] - cfg.noise_std[0]) * torch.rand(b, generator=g)) * 2.0 / 255.0
    blur, jpeg, noisy = u[:, 0] < cfg.p_blur, (u[:, 1] < cfg.p_jpeg) & ~(u[:, 0] < cfg.p_blur), u[:, 2] < cfg.p_noise
    x = hr
    if bool(blur.any()):
        blurred = gaussian_blur(hr, torch.where(blur, sig, torch.ones_like(sig)).to(dev))
        x = torch.where(blur.to(dev)[:, None, None, None], blurred, hr)
    lr = downsample_torch(x, cfg.factor)
    if jpeg_lr is not None and bool(jpeg.any()):
        lr = torch.where(jpeg.to(dev)[:, None, None, None], jpeg_lr, lr)
    gen = dg if dg is not None else g
    noise = torch.randn(lr.shape, generator=gen, device=gen.device)
    lr = lr + noise.to(dev) * (std * noisy.float()).to(dev)[:, None, None, None]
    return premultiplied_clamp(lr)


def sample_aug_level(b: int, max_level: float, p_zero: float, g: torch.Generator) -> torch.Tensor:
    """Noise-conditioning augmentation levels (CDM, Ho et al. 2021 §3.2): a share p_zero at 0
    (the level served by default), the rest uniform in [0, max_level]."""
    u = torch.rand(b, 2, generator=g)
    return torch.where(u[:, 0] < p_zero, 0.0, u[:, 1] * max_level)


def augment(lr: torch.Tensor, aug_level: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """lr_aug = lr + aug_level * n (the contract's definition: no clamp, so serving matches);
    ``g`` may live on the CPU or on lr's device."""
    n = torch.randn(lr.shape, generator=g, device=g.device).to(lr.device)
    return lr + aug_level.to(lr.device)[:, None, None, None] * n


