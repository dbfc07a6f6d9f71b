"""What every training run shares: the run config, torch set-up, per-step RNG, the optimizer
step (clip, AdamW, schedule, EMA), checkpointing and resume."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from diffusion.nets.config import JsonConfig
from diffusion.training.checkpoint import load_checkpoint, load_optimizer, optimizer_tensors, save_checkpoint
from diffusion.training.ema import EMA
from diffusion.training.schedule import lr_at


@dataclass
class TrainConfig(JsonConfig):
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.01
    betas: tuple[float, ...] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    bf16: bool = False                # CPU bf16 autocast: measured slower than fp32 for these nets here
    threads: int = 2
    device: str = "cpu"
    log_every: int = 10
    sample_every: int = 500
    checkpoint_minutes: float = 3.0
    time_limit_minutes: float = 0.0   # > 0: stop (and save) when the wall clock runs out
    tensorboard: bool = True
    # Fractions of ``steps`` whose full checkpoints are kept apart from ``latest`` (e.g. (0.25,) for
    # judging a model against itself at a quarter of its training); later saves never touch them.
    keep_at: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        bad = [f for f in self.keep_at if not 0.0 < f < 1.0]
        if bad:
            raise ValueError(f"keep_at: fractions of the run must lie strictly between 0 and 1, got {bad}")

    def kept_steps(self) -> dict[int, float]:
        """Step -> fraction for ``keep_at``: the checkpoint saved after exactly round(f * steps) steps."""
        kept = {max(1, round(f * self.steps)): float(f) for f in self.keep_at}
        return dict(sorted(kept.items()))


def configure_torch(cfg: TrainConfig) -> torch.device:
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # denormals made CPU step times erratic here
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    return torch.device(cfg.device)


def step_generator(seed: int, step: int) -> torch.Generator:
    """All randomness of one step comes from (seed, step): a resumed run draws exactly the
    batches and noise an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class Optimization:
    """AdamW (Loshchilov & Hutter 2019) + warm-up/cosine + gradient clipping + EMA."""

    def __init__(self, model: nn.Module, cfg: TrainConfig):
        self.model, self.cfg = model, cfg
        decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "embed" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "embed" not in n)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}],
                                     lr=cfg.lr, betas=tuple(cfg.betas))
        self.ema = EMA(model, cfg.ema_decay)

    def learning_rate(self, step: int) -> float:
        """The rate of ``step``; a subclass may schedule differently (e.g. by wall time)."""
        return lr_at(step, self.cfg.lr, self.cfg.warmup, self.cfg.steps)

    def step(self, loss: torch.Tensor, step: int) -> dict[str, float]:
        lr, gnorm = self.update(loss, step)
        return {"lr": lr, "grad_norm": float(gnorm)}

    def update(self, loss: torch.Tensor, step: int) -> tuple[float, torch.Tensor]:
        """One optimizer step; the gradient norm comes back as a tensor, so a GPU caller that does
        not log this step need not wait for the device to read it."""
        lr = self.learning_rate(step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.ema.update(self.model, step)
        return lr, gnorm

    def save(self, path: Path, step: int, meta: dict) -> None:
        opt_tensors, groups = optimizer_tensors(self.opt)
        save_checkpoint(path, {"model": self.model.state_dict(), "ema": self.ema.shadow, "opt": opt_tensors},
                        {**meta, "step": step, "param_groups": groups})

    def load(self, path: Path) -> dict:
        groups, meta = load_checkpoint(path)
        self.model.load_state_dict(groups["model"])
        self.ema.shadow = {k: v.float() for k, v in groups["ema"].items()}
        load_optimizer(self.opt, groups.get("opt", {}), meta["param_groups"])
        return meta


class Clock:
    """Checkpoint cadence and the wall-clock limit."""

    def __init__(self, cfg: TrainConfig):
        self.start = self.last_save = time.time()
        self.cfg = cfg

    def due_checkpoint(self) -> bool:
        if time.time() - self.last_save >= 60.0 * self.cfg.checkpoint_minutes:
            self.last_save = time.time()
            return True
        return False

    def out_of_time(self) -> bool:
        return self.cfg.time_limit_minutes > 0 and time.time() - self.start >= 60.0 * self.cfg.time_limit_minutes


def autocast(cfg: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
