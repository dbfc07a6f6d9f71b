"""Learning-rate schedule: linear warm-up then cosine decay (Loshchilov & Hutter 2017)."""

from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup: int, total: int, floor: float = 0.05) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``base_lr`` to ``floor * base_lr``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t)))
