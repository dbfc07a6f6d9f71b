"""The generic training loop: per-step loss -> optimizer -> logs, sample grids, checkpoints.
Progress reporting is injected (``progress``, e.g. tqdm) so library code prints nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from diffusion.training.common import Clock, Optimization, TrainConfig, step_generator
from diffusion.training.logger import RunLogger

LossFn = Callable[[int, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "latest.safetensors"


def kept_checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}.safetensors"


def train_loop(opt: Optimization, cfg: TrainConfig, run_dir: Path, loss_fn: LossFn, meta: dict,
               sample_fn: Callable[[int], None] | None = None, progress=None, resume: bool = True,
               stop_at: int | None = None) -> dict:
    """Run steps [start, cfg.steps) where start comes from the checkpoint when resuming.
    ``stop_at`` ends early (tests interrupt a run with it). Returns a summary dict."""
    run_dir = Path(run_dir)
    ckpt = checkpoint_path(run_dir)
    start = 0
    if resume and ckpt.exists():
        start = int(opt.load(ckpt)["step"])
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard)
    clock = Clock(cfg)
    bar = progress(total=end, initial=start, desc=run_dir.name) if progress else None
    losses: list[float] = []
    kept = cfg.kept_steps()
    t0, step = time.time(), start
    opt.model.train()
    try:
        for step in range(start, end):
            loss, metrics = loss_fn(step, step_generator(cfg.seed, step))
            stats = opt.step(loss, step)
            losses.append(float(loss.detach()))
            if step % cfg.log_every == 0 or step == end - 1:
                rate = (step + 1 - start) / max(1e-9, time.time() - t0)
                logger.scalars(step, {"loss": losses[-1], **metrics, **stats, "steps_per_s": rate})
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if step + 1 in kept:
                opt.save(kept_checkpoint_path(run_dir, step + 1), step + 1,
                         {**meta, "kept_fraction": kept[step + 1], "planned_steps": cfg.steps})
            if sample_fn and (step + 1) % cfg.sample_every == 0:
                sample_fn(step + 1)
            if clock.due_checkpoint():
                opt.save(ckpt, step + 1, meta)
            if clock.out_of_time():
                end = step + 1
                break
        done = start if end == start else step + 1
        opt.save(ckpt, done, meta)
        if sample_fn and done % cfg.sample_every != 0 and done > start:
            sample_fn(done)
    finally:
        logger.close()
        if bar:
            bar.close()
    wall = time.time() - t0
    return {"start": start, "steps": done, "wall_s": wall, "steps_per_s": (done - start) / max(wall, 1e-9),
            "losses": losses}
