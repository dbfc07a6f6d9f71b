"""uint8 premultiplied RGBA <-> model tensors in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch


def to_model(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N,H,W,4] -> float32 [N,4,H,W] in [-1, 1]."""
    t = torch.as_tensor(images)
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_images(x: torch.Tensor) -> np.ndarray:
    """float [N,4,H,W] in [-1, 1] -> uint8 premultiplied RGBA [N,H,W,4] (colour clamped to alpha)."""
    u = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    a = u[..., 3:4]
    return torch.cat([torch.minimum(u[..., :3], a), a], dim=-1).numpy()
