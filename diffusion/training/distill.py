"""Latent consistency distillation (LCD; Luo et al. 2023, "Latent Consistency Models", Algorithm 1)
of a shipped EDM teacher into a student that draws in 1-4 network rows per step, guidance built in.

One step, for a batch of training latents z with their captions and styles:

1. sigma_t = s_i and sigma_s = s_{i+k} from a Karras grid s_0 = sigma_max > ... > s_{N-1} = sigma_min
   (EDM eq. 5), i uniform: k grid steps at once is LCM's skipping-step schedule;
2. w ~ U[w_min, w_max]; x_t = z + sigma_t n;
3. the teacher's ODE step from sigma_t to sigma_s with classifier-free guidance at w: Euler (DDIM)
   or Heun (EDM Algorithm 1), the x0-based steps of :mod:`diffusion.samplers_single`;
4. loss = pseudo-Huber(f_theta(x_t, sigma_t, w) - f_target(x_s, sigma_s, w)) (Song & Dhariwal
   2023, §3.3), f the consistency function of :mod:`diffusion.nets.consistency` and the target
   an EMA of the student (Song et al. 2023, Algorithm 2: the 'target network').

The student is the teacher's UNet plus a zero-initialised guidance embedding
(``UNetConfig.guidance_embed``), so it starts as the teacher's conditional x0. All randomness of
a step comes from (seed, step), so a resumed CPU run repeats an uninterrupted one bit for bit."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from diffusion.nets.config import EDMConfig, JsonConfig, ModelConfig, UNetConfig, VAEConfig
from diffusion.nets.consistency import ConsistencyDenoiser
from diffusion.nets.edm import EDMDenoiser
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE
from diffusion.schedules import karras_sigmas
from diffusion.training.checkpoint import (
    load_checkpoint,
    load_optimizer,
    optimizer_tensors,
    save_checkpoint,
    save_weights,
)
from diffusion.training.common import Clock, Optimization, TrainConfig, configure_torch, step_generator
from diffusion.training.distill_bundle import Bundle, load_bundle
from diffusion.training.logger import RunLogger, read_metrics
from diffusion.training.loop import checkpoint_path
from diffusion.training.pil_plot import plot_metrics
from diffusion.training.unet_trainer import GRID_PROMPTS, CondDropout


@dataclass
class DistillConfig(JsonConfig):
    """What LCD adds to the ordinary training config (TrainConfig)."""
    w_min: float = 2.0            # guidance range the student learns, around the teacher's default 5
    w_max: float = 8.0
    num_scales: int = 50          # N: the discretised Karras grid
    skip: int = 3                 # k: grid steps per teacher ODE step (LCM's skipping step)
    solver: str = "heun"          # the teacher's ODE step: "euler" (DDIM) or "heun"
    target_decay: float = 0.95    # EMA of the target network (LCM's mu)
    huber_c: float = 0.0          # 0: 0.00054 sqrt(dim) (Song & Dhariwal 2023, §3.3)
    p_both: float = 0.10          # conditioning dropout, as the teacher was trained (unet_trainer.CondDropout)
    p_text: float = 0.05
    p_style: float = 0.05
    sample_guidance: float = 0.0  # the grid's w; 0: the teacher's default guidance
    sample_sigma_min: float = 0.5  # the grid's last evaluated sigma for >1 steps (LCM ends near t=259)
    fit_to_time: bool = True      # with a time limit: size the cosine schedule to the steps that fit

    def __post_init__(self) -> None:
        if self.solver not in ("euler", "heun"):
            raise ValueError(f"solver must be 'euler' or 'heun', not {self.solver!r}")
        if not 1 <= self.skip < self.num_scales:
            raise ValueError(f"skip must lie in [1, num_scales), got {self.skip} with num_scales {self.num_scales}")
        if not 1.0 <= self.w_min <= self.w_max:
            raise ValueError(f"guidance range must satisfy 1 <= w_min <= w_max, got [{self.w_min}, {self.w_max}]")


@dataclass
class Teacher:
    denoiser: EDMDenoiser
    vae: VAE                 # its decoder only is loaded from a bundle
    config: dict             # the teacher's config.json


def load_teacher(folder: Path) -> Teacher:
    """A shipped model folder, or a bundle's ``teacher/`` (decoder-only VAE)."""
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    mc = ModelConfig.from_dict(raw)
    denoiser = EDMDenoiser(UNet(UNetConfig.from_dict(mc.unet)), EDMConfig.from_dict(mc.edm))
    denoiser.net.load_state_dict({k: v.float() for k, v in load_file(str(folder / "unet_ema.safetensors")).items()})
    vae = VAE(VAEConfig.from_dict(mc.vae))
    if (folder / "vae_ema.safetensors").is_file():
        vae.load_state_dict(load_file(str(folder / "vae_ema.safetensors")))
    else:
        dec = load_file(str(folder / "vae_decoder.safetensors"))
        missing = sorted(k for k in vae.state_dict() if k.startswith("decoder.") and k not in dec)
        if missing:
            raise ValueError(f"{folder}/vae_decoder.safetensors lacks {missing[:3]}...")
        vae.load_state_dict({k: v.float() for k, v in dec.items()}, strict=False)
    for p in [*denoiser.parameters(), *vae.parameters()]:
        p.requires_grad_(False)
    return Teacher(denoiser.eval(), vae.eval(), raw)


def student_from_teacher(teacher: Teacher, seed: int) -> tuple[ConsistencyDenoiser, UNetConfig, EDMConfig]:
    mc = ModelConfig.from_dict(teacher.config)
    ucfg = UNetConfig.from_dict({**mc.unet, "guidance_embed": True})
    ecfg = EDMConfig.from_dict(mc.edm)
    torch.manual_seed(seed)
    student = ConsistencyDenoiser(EDMDenoiser(UNet(ucfg), ecfg), ecfg.sigma_min)
    missing, unexpected = student.net.load_state_dict(teacher.denoiser.net.state_dict(), strict=False)
    if unexpected or any(not k.startswith("guidance_") for k in missing):
        raise ValueError(f"teacher and student UNets differ: missing {missing}, unexpected {unexpected}")
    return student, ucfg, ecfg


def guided_x0(teacher: EDMDenoiser, x, sigma, w, ctx, mask, style, uctx, umask, ustyle):
    """D_w = D(uncond) + w (D(cond) - D(uncond)), both branches in one call (diffusion.guidance)."""
    both = teacher(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([ctx, uctx]), torch.cat([mask, umask]),
                   torch.cat([style, ustyle]))
    cond, uncond = both.chunk(2)
    return uncond + w.reshape(-1, 1, 1, 1) * (cond - uncond)


def teacher_step(solver: str, x0_fn, x: torch.Tensor, sigma_t: torch.Tensor, sigma_s: torch.Tensor) -> torch.Tensor:
    """One step of the probability-flow ODE dx/dsigma = (x - D(x))/sigma from sigma_t to sigma_s > 0
    (EDM eq. 3 with s = 1): Euler, which is DDIM in these coordinates, or Heun's corrector
    (EDM Algorithm 1, lines 5-8); per-row sigmas. The same arithmetic as sample_euler/sample_heun."""
    st, ss = sigma_t.reshape(-1, 1, 1, 1), sigma_s.reshape(-1, 1, 1, 1)
    d = (x - x0_fn(x, sigma_t)) / st
    x_next = x + (ss - st) * d
    if solver == "heun":
        d2 = (x_next - x0_fn(x_next, sigma_s)) / ss
        x_next = x + (ss - st) * (0.5 * d + 0.5 * d2)
    return x_next


def pseudo_huber(diff: torch.Tensor, c: float) -> torch.Tensor:
    """sqrt(||d||^2 + c^2) - c per row (Song & Dhariwal 2023, eq. 5)."""
    return torch.sqrt(diff.flatten(1).square().sum(dim=1) + c * c) - c


class DistillOptimization(Optimization):
    """The student's optimizer and shipped EMA, plus the target network the loss bootstraps from."""

    def __init__(self, model: ConsistencyDenoiser, cfg: TrainConfig, target: ConsistencyDenoiser, mu: float):
        super().__init__(model, cfg)
        self.target, self.mu = target, mu
        self.target.load_state_dict(model.state_dict())
        for p in self.target.parameters():
            p.requires_grad_(False)

    def step(self, loss: torch.Tensor, step: int) -> dict:
        """The optimizer step, then the target's EMA; the gradient norm stays a tensor (reading it
        every step would stall a GPU run on a device sync; the loop reads it when it logs)."""
        lr, gnorm = self.update(loss, step)
        with torch.no_grad():
            targets = list(self.target.parameters())
            torch._foreach_mul_(targets, self.mu)
            torch._foreach_add_(targets, [p.detach() for p in self.model.parameters()], alpha=1.0 - self.mu)
        return {"lr": lr, "grad_norm": gnorm}

    def save(self, path: Path, step: int, meta: dict) -> None:
        opt_tensors, groups = optimizer_tensors(self.opt)
        save_checkpoint(path, {"model": self.model.state_dict(), "ema": self.ema.shadow, "opt": opt_tensors,
                               "target": self.target.state_dict()}, {**meta, "step": step, "param_groups": groups})

    def load(self, path: Path) -> dict:
        groups, meta = load_checkpoint(path)
        self.model.load_state_dict(groups["model"])
        self.target.load_state_dict(groups["target"])
        device = next(self.model.parameters()).device
        self.ema.shadow = {k: v.float().to(device) for k, v in groups["ema"].items()}
        load_optimizer(self.opt, groups.get("opt", {}), meta["param_groups"])
        return meta


class DistillBatch:
    """Training tensors on the training device; every draw comes from the step's CPU generator."""

    def __init__(self, bundle: Bundle, device: torch.device):
        self.mean, self.std = bundle.mean.to(device), bundle.std.to(device)
        self.rows, self.styles = bundle.caption_rows.to(device), bundle.style_ids.to(device)
        self.states, self.mask = bundle.states.to(device), bundle.mask.to(device)
        self.shift, self.scale = float(bundle.latent.shift), float(bundle.latent.scale)

    def cond(self, idx: torch.Tensor, drop_text: torch.Tensor, drop_style: torch.Tensor):
        rows = torch.where(drop_text, torch.zeros_like(idx), self.rows[idx])  # row 0 is ""
        style = torch.where(drop_style, torch.zeros_like(idx), self.styles[idx])
        return self.states[rows], self.mask[rows], style

    def uncond(self, n: int):
        zeros = torch.zeros(n, dtype=torch.int64, device=self.rows.device)
        return self.states[zeros], self.mask[zeros], zeros


def make_loss(opt: DistillOptimization, teacher: EDMDenoiser, data: DistillBatch, dcfg: DistillConfig,
              cfg: TrainConfig, grid: torch.Tensor, device: torch.device):
    dropout = CondDropout(dcfg.p_both, dcfg.p_text, dcfg.p_style)
    dim = int(np.prod(data.mean.shape[1:]))
    c = dcfg.huber_c or 0.00054 * math.sqrt(dim)
    student, target = opt.model, opt.target

    def loss_fn(step: int, g: torch.Generator):
        b = cfg.batch_size
        idx = torch.randint(len(data.mean), (b,), generator=g)
        eps_z = torch.randn((b, *data.mean.shape[1:]), generator=g)
        drop_text, drop_style = dropout.masks(torch.rand(b, generator=g))
        i = torch.randint(0, dcfg.num_scales - dcfg.skip, (b,), generator=g)
        w = dcfg.w_min + (dcfg.w_max - dcfg.w_min) * torch.rand(b, generator=g)
        n = torch.randn(eps_z.shape, generator=g)
        idx, eps_z, n, w, i = idx.to(device), eps_z.to(device), n.to(device), w.to(device), i.to(device)
        z = (data.mean[idx] + data.std[idx] * eps_z - data.shift) * data.scale
        ctx, mask, style = data.cond(idx, drop_text.to(device), drop_style.to(device))
        uctx, umask, ustyle = data.uncond(b)
        sigma_t, sigma_s = grid[i], grid[i + dcfg.skip]
        x_t = z + sigma_t.reshape(-1, 1, 1, 1) * n
        with torch.no_grad():
            def x0_fn(x, s):
                return guided_x0(teacher, x, s, w, ctx, mask, style, uctx, umask, ustyle)

            x_s = teacher_step(dcfg.solver, x0_fn, x_t, sigma_t, sigma_s)
            f_target = target(x_s, sigma_s, ctx, mask, style, w)
        f = student(x_t, sigma_t, ctx, mask, style, w)
        loss = pseudo_huber(f - f_target, c).mean()
        return loss, {"sigma_t_mean": sigma_t.mean()}

    return loss_fn


# ---------------------------------------------------------------- sample grid


class TorchRows:
    """A torch denoiser behind the numpy sampler contract denoise(x, sigma) -> x0."""

    def __init__(self, fn, device: torch.device):
        self.fn, self.device = fn, device

    @torch.no_grad()
    def __call__(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        st = torch.from_numpy(np.asarray(sigma, dtype=np.float32)).to(self.device)
        return self.fn(xt, st).float().cpu().numpy().astype(x.dtype, copy=False)


GRID_STEPS = (1, 2, 4)


def sample_sheet(student: ConsistencyDenoiser, teacher: Teacher, bundle: Bundle, dcfg: DistillConfig,
                 device: torch.device, seed: int = 0, with_teacher: bool = True):
    """Rows: the teacher at its shipped default (sampler, steps, guidance), then the student with
    the ``lcm`` sampler at 1, 2 and 4 steps; within each block one row per style, one column per
    grid prompt (prompt p draws with seed ``seed + p``, as the other trainers' grids)."""
    from diffusion.data.images import grid as contact_sheet
    from diffusion.noise import SeededNoise, initial_noise
    from diffusion.samplers import get_sampler
    from diffusion.training.tensors import to_images

    defaults = teacher.config.get("defaults", {})
    w_default = float(defaults.get("guidance_scale", 5.0))
    w = dcfg.sample_guidance or w_default
    styles = [s for s in range(1, len(bundle.styles))] or [0]
    prompts = list(GRID_PROMPTS)
    rows = [bundle.row(p) for p in prompts]
    cells = [(s, p) for s in styles for p in range(len(prompts))]
    ctx = bundle.states[[rows[p] for _, p in cells]].to(device)
    mask = bundle.mask[[rows[p] for _, p in cells]].to(device)
    style = torch.tensor([s for s, _ in cells], dtype=torch.int64, device=device)
    wt = torch.full((len(cells),), w, device=device)
    seeds = [seed + p for _, p in cells]
    shape = tuple(bundle.mean.shape[1:])
    ecfg = student.denoiser.config
    uctx, umask = bundle.states[[0] * len(cells)].to(device), bundle.mask[[0] * len(cells)].to(device)
    ustyle = torch.zeros(len(cells), dtype=torch.int64, device=device)
    blocks = []
    if with_teacher:
        tsteps = int(defaults.get("steps", 20))
        sig = karras_sigmas(tsteps, ecfg.sigma_min, ecfg.sigma_max)
        den = TorchRows(lambda x, s: guided_x0(teacher.denoiser, x, s, wt, ctx, mask, style, uctx, umask, ustyle),
                        device)
        x = initial_noise(seeds, shape, np.float32) * np.float32(sig[0])
        sampler = get_sampler(str(defaults.get("sampler", "unipc")))
        blocks.append(sampler(den, x, sig, noise=SeededNoise(tuple(seeds), shape, "float32")))
    den = TorchRows(lambda x, s: student(x, s, ctx, mask, style, wt), device)
    for steps in GRID_STEPS:
        sig = karras_sigmas(steps, max(ecfg.sigma_min, dcfg.sample_sigma_min), ecfg.sigma_max)
        x = initial_noise(seeds, shape, np.float32) * np.float32(sig[0])
        blocks.append(get_sampler("lcm")(den, x, sig, noise=SeededNoise(tuple(seeds), shape, "float32")))
    lat = torch.from_numpy(np.concatenate(blocks).astype(np.float32)).to(device) / bundle.latent.scale \
        + bundle.latent.shift
    with torch.no_grad():
        images = to_images(teacher.vae.decode(lat).cpu())
    return contact_sheet(images, cols=len(prompts), scale=3)


# ---------------------------------------------------------------- the run


def _fit_steps(cfg: TrainConfig, start: int, done: int, t_start: float, t_calib: float, budget_s: float) -> int:
    """Steps that fit the wall-clock budget at the rate measured since ``t_calib`` (the first steps,
    with their one-off start-up costs, are left out), keeping 8% of the budget for the end."""
    rate = (done - start) / max(1e-9, time.time() - t_calib)
    left = 0.92 * budget_s - (time.time() - t_start)
    return max(cfg.warmup + 1, min(cfg.steps, done + int(rate * max(0.0, left))))


def distill(teacher_dir: Path, bundle_dir: Path, run_dir: Path, cfg: TrainConfig, dcfg: DistillConfig,
            resume: bool = True, stop_at: int | None = None, log=None, init_student: Path | None = None) -> dict:
    """Train (or resume) a distillation run in ``run_dir``; writes the student's EMA
    ``unet_ema.safetensors`` (float16; ``unet_ema_fp32.safetensors`` beside it), ``config.json``,
    ``metrics.jsonl``, ``training_curves.png`` and ``samples.png``. ``stop_at`` ends early (tests
    interrupt a run with it)."""
    device = configure_torch(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    teacher = load_teacher(teacher_dir)
    bundle = load_bundle(bundle_dir)
    if list(bundle.styles) != list(ModelConfig.from_dict(teacher.config).styles):
        raise ValueError(f"bundle styles {bundle.styles} differ from the teacher's")
    student, ucfg, ecfg = student_from_teacher(teacher, cfg.seed)
    if init_student is not None:  # continue an earlier run whose optimizer state is gone (a fresh GPU machine)
        student.net.load_state_dict({k: v.float() for k, v in load_file(str(init_student)).items()})
    target, _, _ = student_from_teacher(teacher, cfg.seed)
    teacher.denoiser.to(device)
    teacher.vae.to(device)
    student, target = student.to(device), target.to(device)
    opt = DistillOptimization(student, cfg, target, dcfg.target_decay)
    grid = torch.from_numpy(karras_sigmas(dcfg.num_scales, ecfg.sigma_min, ecfg.sigma_max)[:-1]).float().to(device)
    data = DistillBatch(bundle, device)
    loss_fn = make_loss(opt, teacher.denoiser, data, dcfg, cfg, grid, device)

    ckpt = checkpoint_path(run_dir)
    start = 0
    if resume and ckpt.exists():
        meta = opt.load(ckpt)
        start, cfg.steps = int(meta["step"]), int(meta["planned_steps"])
        say(f"resumed at step {start} of {cfg.steps}")
    cfg.save(run_dir / "train_config.json")
    dcfg.save(run_dir / "distill_config.json")
    logger = RunLogger(run_dir, tensorboard=False)
    clock = Clock(cfg)
    meta = {"kind": "distill", "train": cfg.to_dict(), "distill": dcfg.to_dict(), "teacher": str(teacher_dir),
            "bundle": str(bundle_dir)}
    budget = 60.0 * cfg.time_limit_minutes
    t0 = time.time()
    calib_at, t_calib, fitted = start + 10, t0, not (dcfg.fit_to_time and budget > 0 and start == 0)
    step, end = start, cfg.steps
    opt.model.train()
    try:
        while step < (cfg.steps if stop_at is None else min(stop_at, cfg.steps)):
            loss, metrics = loss_fn(step, step_generator(cfg.seed, step))
            stats = opt.step(loss, step)
            step += 1
            if step == calib_at:
                t_calib = time.time()
            if not fitted and step >= calib_at + 40:
                cfg.steps = _fit_steps(cfg, calib_at, step, t0, t_calib, budget)
                fitted = True
                say(f"fitted the schedule to the time limit: {cfg.steps} steps")
            if (step - 1) % cfg.log_every == 0 or step == cfg.steps:
                rate = (step - start) / max(1e-9, time.time() - t0)
                logger.scalars(step - 1, {"loss": float(loss.detach()), **{k: float(v) for k, v in metrics.items()},
                                          **{k: float(v) for k, v in stats.items()}, "steps_per_s": rate})
                if (step - 1) % (cfg.log_every * 20) == 0:
                    say(f"step {step}/{cfg.steps} loss {float(loss.detach()):.5f} {rate:.2f} steps/s")
            if clock.due_checkpoint():
                opt.save(ckpt, step, {**meta, "planned_steps": cfg.steps})
            if budget > 0 and time.time() - t0 >= budget:
                break
        end = step
        opt.save(ckpt, end, {**meta, "planned_steps": cfg.steps})
    finally:
        logger.close()
    wall = time.time() - t0
    summary = {"start": start, "steps": end, "planned_steps": cfg.steps, "wall_s": round(wall, 1),
               "steps_per_s": round((end - start) / max(wall, 1e-9), 3), "device": cfg.device,
               "batch_size": cfg.batch_size}
    _write_outputs(opt, teacher, bundle, ucfg, ecfg, cfg, dcfg, run_dir, device, summary)
    return summary


def _write_outputs(opt, teacher: Teacher, bundle: Bundle, ucfg: UNetConfig, ecfg: EDMConfig, cfg: TrainConfig,
                   dcfg: DistillConfig, run_dir: Path, device: torch.device, summary: dict) -> None:
    student = ConsistencyDenoiser(EDMDenoiser(UNet(ucfg), ecfg), ecfg.sigma_min)
    opt.ema.copy_to(student)
    student = student.to(device).eval()
    save_weights(run_dir / "unet_ema_fp32.safetensors", student.net.state_dict())
    # float16, as the teacher ships (provenance weights_dtype): half the bytes of float32.
    save_file({k: v.detach().half().contiguous().cpu() for k, v in student.net.state_dict().items()},
              str(run_dir / "unet_ema.safetensors"))
    recs = read_metrics(run_dir / "metrics.jsonl")
    config = {**teacher.config, "unet": ucfg.to_dict(),
              "consistency": {"sigma_min": ecfg.sigma_min, "guidance_range": [dcfg.w_min, dcfg.w_max],
                              "parametrisation": "f = c_skip x + (1 - c_skip) D, "
                                                 "c_skip = s_min^2 / ((sigma - s_min)^2 + s_min^2)"},
              "distill": {"train": cfg.to_dict(), "distill": dcfg.to_dict(), "stats": summary,
                          "final_loss": recs[-1]["loss"] if recs else None, "bundle": bundle.meta["sources"]}}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    plot_metrics(recs, run_dir / "training_curves.png", ["loss", "grad_norm", "lr"],
                 title="latent consistency distillation")
    sample_sheet(student, teacher, bundle, dcfg, device, seed=cfg.seed).save(run_dir / "samples.png")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
