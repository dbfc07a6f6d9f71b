"""Train the x4 upscalers (docs/MODEL.md, "The upscaler") on the 128² emoji set.

arch 'diffusion': EDM (Karras et al. 2022) on the residual r = HR - up(lr_aug): ln(sigma) ~
N(P_mean, P_std^2) around the measured sigma_data, plus a share of rows at sigma_max, where the
sampler's first step always evaluates; loss lambda(sigma) ||D(r + n; sigma, up, aug) - r||^2.
arch 'cnn': the deterministic baseline, L1 between its residual and r (EDSR, Lim et al. 2017).

Both share the project's trainer machinery (diffusion.training.loop): bit-exact resumable
checkpoints on the CPU, EMA, metrics.jsonl, and a sample grid of held-out subjects
(LR | bicubic | model | ground truth). On CUDA the training set lives on the GPU as uint8 and the
degradations run there; only JPEG comes from a pool made once on the CPU.

Run: ``atelier train upscale --arch diffusion|cnn --data emoji-128.npz --run-dir DIR`` or
``python -m diffusion.training.upscale_trainer ...`` (the same arguments; imports nothing beyond
torch, numpy, pillow and safetensors, for bare GPU machines).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see diffusion/training/cli.py

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from diffusion.data.dataset import TRAIN, VALIDATION, load_dataset  # noqa: E402
from diffusion.data.images import grid  # noqa: E402
from diffusion.nets.config import JsonConfig  # noqa: E402
from diffusion.nets.edm import edm_loss_weight  # noqa: E402
from diffusion.nets.upscaler import UpscalerConfig, build_upscaler  # noqa: E402
from diffusion.resample import downsample_torch, upsample_torch  # noqa: E402
from diffusion.schedules import karras_sigmas  # noqa: E402
from diffusion.training.checkpoint import load_checkpoint, save_weights  # noqa: E402
from diffusion.training.common import Optimization, TrainConfig, autocast, configure_torch  # noqa: E402
from diffusion.training.degradations import (  # noqa: E402
    DegradationConfig,
    augment,
    degrade,
    jpeg_pool,
    premultiplied_clamp,
    sample_aug_level,
)
from diffusion.training.logger import plot_curves  # noqa: E402
from diffusion.training.loop import checkpoint_path, train_loop  # noqa: E402
from diffusion.training.tensors import to_images  # noqa: E402
from diffusion.training.upscale_args import add_arguments  # noqa: E402

WEIGHTS = "upscaler_ema.safetensors"
GRID_ROWS = 8          # held-out subjects in the sample grid
GRID_STEPS = 4         # diffusion sampler steps of the grid (Euler, Karras sigmas)


@dataclass
class UpscaleTrainOptions(JsonConfig):
    crop: int = 64                  # HR crop side (multiple of the size multiple); 128 = whole images
    p_sigma_max: float = 0.1        # share of rows trained at exactly sigma_max
    p_std: float = 1.2              # EDM's P_std; P_mean = -1.2 + ln(sigma_data / 0.5)
    hflip: bool = True
    by_time: bool = False           # cosine learning rate over the wall-clock limit (one-shot GPU runs)


class TimedOptimization(Optimization):
    """Warm-up by steps, then cosine over the elapsed fraction of the time limit instead of the
    step count: a run bounded only by wall time still anneals. Not resumable bit-exactly (time
    decides the rate), so it is used only when ``by_time`` asks for it."""

    def __init__(self, model, cfg: TrainConfig, floor: float = 0.05):
        super().__init__(model, cfg)
        self.start, self.floor = time.time(), floor

    def learning_rate(self, step: int) -> float:
        frac = min(1.0, (time.time() - self.start) / max(1.0, 60.0 * self.cfg.time_limit_minutes))
        lr = self.cfg.lr * min(1.0, (step + 1) / max(1, self.cfg.warmup))
        return lr * (self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def to_unit_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,4,H,W] -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def measure_sigma_data(hr: torch.Tensor, factor: int, chunk: int = 256) -> float:
    """Std of the clean residual HR - up(down(HR)) over the training set (EDM's sigma_data)."""
    total, sq, n = 0.0, 0.0, 0
    for i in range(0, hr.shape[0], chunk):
        x = to_unit_nchw(hr[i:i + chunk])
        r = (x - upsample_torch(downsample_torch(x, factor), factor)).double()
        total += float(r.sum())
        sq += float(r.square().sum())
        n += r.numel()
    mean = total / n
    return float(math.sqrt(max(sq / n - mean * mean, 1e-12)))


def device_generator(g: torch.Generator, device: torch.device) -> torch.Generator:
    """The step's generator on the CPU, or a device generator seeded from it: big noise tensors are
    drawn where they are used, still from (seed, step)."""
    if device.type == "cpu":
        return g
    dg = torch.Generator(device=device)
    dg.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
    return dg


class Batches:
    """Random crops (and flips) of training images with their pooled JPEG LR, on the device."""

    def __init__(self, hr: np.ndarray, jpeg: np.ndarray, factor: int, crop: int, hflip: bool,
                 device: torch.device):
        self.hr = torch.from_numpy(np.ascontiguousarray(hr)).permute(0, 3, 1, 2).contiguous().to(device)
        self.jpeg = torch.from_numpy(np.ascontiguousarray(jpeg)).permute(0, 3, 1, 2).contiguous().to(device)
        self.factor, self.crop, self.hflip = factor, crop, hflip
        size = self.hr.shape[-1]
        if crop > size or crop % factor:
            raise ValueError(f"crop {crop} must be at most {size} and a multiple of {factor}")

    def __len__(self) -> int:
        return int(self.hr.shape[0])

    def draw(self, b: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """b random (image, crop, flip) draws -> HR [b,4,c,c] and pooled JPEG LR [b,4,c/f,c/f] in [-1, 1]."""
        f, c = self.factor, self.crop
        idx = torch.randint(len(self), (b,), generator=g)
        span = (self.hr.shape[-1] - c) // f + 1
        oy = torch.randint(span, (b,), generator=g) * f
        ox = torch.randint(span, (b,), generator=g) * f
        flip = torch.rand(b, generator=g) < 0.5
        dev = self.hr.device
        hr = _crop(self.hr[idx.to(dev)], oy, ox, c)
        lr = _crop(self.jpeg[idx.to(dev)], oy // f, ox // f, c // f)
        if self.hflip:
            m = flip.to(dev)[:, None, None, None]
            hr, lr = torch.where(m, hr.flip(-1), hr), torch.where(m, lr.flip(-1), lr)
        return to_unit_nchw(hr), to_unit_nchw(lr)


def _crop(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, c: int) -> torch.Tensor:
    """Per-row crops [B,C,c,c] of x [B,C,H,W] at offsets (oy, ox), gathered in one indexing op."""
    if c == x.shape[-1] and c == x.shape[-2]:
        return x
    dev = x.device
    ar = torch.arange(c)
    rows = (oy[:, None] + ar[None, :]).to(dev)
    cols = (ox[:, None] + ar[None, :]).to(dev)
    b = torch.arange(x.shape[0], device=dev)
    return x[b[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def training_sigma(b: int, cfg: UpscalerConfig, opts: UpscaleTrainOptions, g: torch.Generator) -> torch.Tensor:
    p_mean = -1.2 + math.log(cfg.sigma_data / 0.5)
    sigma = torch.exp(p_mean + opts.p_std * torch.randn(b, generator=g))
    at_max = torch.rand(b, generator=g) < opts.p_sigma_max
    return torch.where(at_max, torch.full_like(sigma, cfg.sigma_max), sigma)


def make_loss(model, batches: Batches, cfg: UpscalerConfig, deg: DegradationConfig, opts: UpscaleTrainOptions,
              tcfg: TrainConfig, device: torch.device):
    f = cfg.factor

    def loss_fn(step: int, g: torch.Generator):
        b = tcfg.batch_size
        hr, jpeg_lr = batches.draw(b, g)
        dg = device_generator(g, device)
        lr = degrade(hr, jpeg_lr, deg, g, dg)
        if cfg.arch == "cnn":
            up = upsample_torch(lr, f)
            with autocast(tcfg, device):
                out = model(up)
            loss = (out.float() - (hr - up)).abs().mean()
            return loss, {}
        aug = sample_aug_level(b, cfg.max_aug_level, deg.aug_p_zero, g).to(device)
        up = upsample_torch(augment(lr, aug, dg), f)
        r = hr - up
        sigma = training_sigma(b, cfg, opts, g).to(device)
        n = torch.randn(r.shape, generator=dg, device=device) * sigma[:, None, None, None]
        with autocast(tcfg, device):
            d = model(r + n, sigma, up, aug)
        w = edm_loss_weight(sigma, cfg.sigma_data)[:, None, None, None]
        loss = (w * (d.float() - r).square()).mean()
        return loss, {}

    return loss_fn


@torch.no_grad()
def upscale_torch(model, lr: torch.Tensor, cfg: UpscalerConfig, steps: int = GRID_STEPS, aug_level: float = 0.0,
                  seed: int = 0) -> torch.Tensor:
    """LR [B,4,h,w] -> HR [B,4,4h,4w] in torch, the contract's sampler (docs/ARCHITECTURE.md,
    "Super-resolution"): Euler over Karras sigmas on the residual from sigma_max * n, or the
    CNN's residual in one call. For training grids and validation numbers only."""
    g = torch.Generator().manual_seed(seed)
    dev = lr.device
    if cfg.arch == "cnn":
        up = upsample_torch(lr, cfg.factor)
        return premultiplied_clamp(up + model(up).float())
    aug = torch.full((lr.shape[0],), float(aug_level), device=dev)
    lr_aug = lr + aug_level * torch.randn(lr.shape, generator=g).to(dev)
    up = upsample_torch(lr_aug, cfg.factor)
    sigmas = karras_sigmas(steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    x = float(sigmas[0]) * torch.randn(up.shape, generator=g).to(dev)
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x0 = model(x, torch.full((lr.shape[0],), float(s), device=dev), up, aug).float()
        x = x + (float(s_next) - float(s)) * (x - x0) / float(s)
    return premultiplied_clamp(up + x)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR over RGBA in [-1, 1] (peak-to-peak 2)."""
    mse = float((a.double() - b.double()).square().mean())
    return 10.0 * math.log10(4.0 / max(mse, 1e-12))


def make_sampler(opt: Optimization, cfg: UpscalerConfig, val_hr: np.ndarray, run_dir: Path, device: torch.device,
                 n_val: int):
    """The loop's sample step: the EMA net's grid of held-out subjects (rows: LR | bicubic | model |
    GT, at 128²) and validation PSNR of bicubic and the model, appended to metrics.jsonl."""
    # Evenly spaced through the held-out set, so the grid and the PSNR cover every style.
    pick = np.unique(np.linspace(0, len(val_hr) - 1, min(n_val, len(val_hr))).round().astype(np.int64))
    hr = to_unit_nchw(torch.from_numpy(np.ascontiguousarray(val_hr[pick])).permute(0, 3, 1, 2)).to(device)
    lr = downsample_torch(hr, cfg.factor)
    ema = build_upscaler(cfg).to(device)

    def sample_fn(step: int) -> None:
        opt.ema.copy_to(ema)
        ema.eval()
        out = torch.cat([upscale_torch(ema, lr[i:i + 32], cfg) for i in range(0, hr.shape[0], 32)])
        bicubic = premultiplied_clamp(upsample_torch(lr, cfg.factor))
        rec = {"step": step, "time": time.time(), "val_psnr_bicubic": psnr(bicubic, hr),
               "val_psnr_model": psnr(out, hr)}
        if cfg.arch == "diffusion":  # one step: the x0 estimate at sigma_max alone
            one = torch.cat([upscale_torch(ema, lr[i:i + 32], cfg, steps=1) for i in range(0, hr.shape[0], 32)])
            rec["val_psnr_model_1step"] = psnr(one, hr)
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        rows = np.unique(np.linspace(0, hr.shape[0] - 1, min(GRID_ROWS, hr.shape[0])).round().astype(np.int64))
        rows = torch.from_numpy(rows).to(device)
        nearest = torch.nn.functional.interpolate(lr[rows], scale_factor=cfg.factor, mode="nearest")
        cells = torch.stack([nearest, bicubic[rows], out[rows], hr[rows]], dim=1).flatten(0, 1)
        (run_dir / "samples").mkdir(exist_ok=True)
        grid(to_images(cells.cpu()), cols=4, scale=2).save(run_dir / "samples" / "latest.png")
        opt.model.train()

    return sample_fn


def train_upscaler(data: Path, run_dir: Path, cfg: UpscalerConfig, tcfg: TrainConfig,
                   deg: DegradationConfig | None = None, opts: UpscaleTrainOptions | None = None,
                   progress=None, resume: bool = True, stop_at: int | None = None, n_val: int = 64,
                   init_weights: Path | None = None) -> dict:
    """Train one upscaler (a fresh run starts from ``init_weights``, an earlier run's EMA, when given);
    writes ``run_dir``/{checkpoints/, metrics.jsonl, samples/latest.png,
    upscaler_ema.safetensors, config.json, summary.json}. Returns the loop's summary."""
    device = configure_torch(tcfg)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    deg, opts = deg or DegradationConfig(factor=cfg.factor), opts or UpscaleTrainOptions()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(data)
    train, val = ds.subset(TRAIN), ds.subset(VALIDATION)
    if len(train) == 0:
        raise ValueError(f"{data}: no training images")
    if train.images.shape[1] % cfg.size_multiple or opts.crop % cfg.size_multiple:
        raise ValueError(f"images {train.images.shape[1]}² and crop {opts.crop} must be multiples of "
                         f"{cfg.size_multiple}")
    hr_cpu = torch.from_numpy(np.ascontiguousarray(train.images)).permute(0, 3, 1, 2)
    cfg.sigma_data = round(measure_sigma_data(hr_cpu, cfg.factor), 6)
    batches = Batches(train.images, jpeg_pool(train.images, deg, tcfg.seed), cfg.factor, opts.crop, opts.hflip,
                      device)
    torch.manual_seed(tcfg.seed)
    model = build_upscaler(cfg)
    if init_weights is not None:  # continue an earlier run whose optimizer state is gone (a fresh GPU machine)
        model.load_state_dict({k: v.float() for k, v in load_file(str(init_weights)).items()})
    model = model.to(device)
    opt = (TimedOptimization if opts.by_time else Optimization)(model, tcfg)
    meta = {"kind": f"upscaler-{cfg.arch}", "upscaler": cfg.to_dict(), "train": tcfg.to_dict(),
            "degradation": deg.to_dict(), "options": opts.to_dict(), "dataset": str(data)}
    val_hr = val.images if len(val) else train.images
    sample_fn = make_sampler(opt, cfg, val_hr, run_dir, device, n_val)
    loss_fn = make_loss(model, batches, cfg, deg, opts, tcfg, device)
    summary = train_loop(opt, tcfg, run_dir, loss_fn, meta, sample_fn, progress, resume, stop_at)
    ema = build_upscaler(cfg)
    opt.ema.copy_to(ema)
    save_weights(run_dir / WEIGHTS, ema.state_dict())
    record = {**cfg.to_dict(), "size_multiple": cfg.size_multiple, "params": sum(p.numel() for p in ema.parameters()),
              "train": tcfg.to_dict(), "degradation": deg.to_dict(), "options": opts.to_dict(),
              "dataset": {"path": str(data), "train": len(train), "validation": len(val)},
              "summary": {k: v for k, v in summary.items() if k != "losses"}}
    (run_dir / "config.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps(record["summary"], indent=2) + "\n", encoding="utf-8")
    try:
        plot_curves({f"upscaler ({cfg.arch})": run_dir}, run_dir / "curves.png",
                    {f"upscaler ({cfg.arch})": ["loss", "grad_norm"]})
    except ImportError:  # matplotlib is not on bare GPU machines: draw it later from metrics.jsonl
        pass
    return summary


EXPORTED = (WEIGHTS, "config.json", "metrics.jsonl", "samples/latest.png")


def export_run(run_dir: Path, out: Path) -> list[Path]:
    """Copy only what leaves a run (weights, config, metrics, sample grid) into ``out``, flat."""
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in EXPORTED:
        src = Path(run_dir) / name
        if src.exists():
            dst = out / ("samples.png" if name.endswith(".png") else name)
            shutil.copyfile(src, dst)
            copied.append(dst)
    return copied


def run(args: argparse.Namespace) -> int:
    by_time = args.steps is None and args.max_minutes > 0
    steps = args.steps if args.steps is not None else (10**9 if by_time else 20000)
    tcfg = TrainConfig(steps=steps, batch_size=args.batch, lr=args.lr, warmup=args.warmup, ema_decay=args.ema_decay,
                       seed=args.seed, threads=args.threads, device=args.device,
                       bf16=args.device == "cuda" if args.bf16 is None else args.bf16,
                       sample_every=args.sample_every, checkpoint_minutes=args.checkpoint_minutes,
                       time_limit_minutes=args.max_minutes, tensorboard=False, log_every=20)
    cfg = UpscalerConfig(arch=args.arch, width=tuple(args.width), num_blocks=tuple(args.blocks))
    opts = UpscaleTrainOptions(crop=args.crop, by_time=by_time)
    try:
        summary = train_upscaler(Path(args.data), Path(args.run_dir), cfg, tcfg, opts=opts, resume=not args.fresh,
                                 n_val=args.n_val, init_weights=Path(args.init_weights) if args.init_weights else None)
    except Exception:
        if args.export_dir and salvage_run(Path(args.run_dir), Path(args.export_dir)):
            print(f"training failed; the last checkpoint's EMA weights are in {args.export_dir}", file=sys.stderr)
        raise
    if args.export_dir:
        export_run(Path(args.run_dir), Path(args.export_dir))
    print(json.dumps({"arch": args.arch, **{k: v for k, v in summary.items() if k != "losses"}}))
    return 0


def salvage_run(run_dir: Path, out: Path) -> bool:
    """After a failed run: the last checkpoint's EMA weights and its config (marked ``salvaged``),
    the metrics and the last grid into ``out``, so a one-shot run still leaves a model."""
    ckpt = checkpoint_path(run_dir)
    if not ckpt.exists():
        return False
    groups, meta = load_checkpoint(ckpt)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out / WEIGHTS, groups["ema"])
    record = {**meta["upscaler"], "train": meta["train"], "degradation": meta["degradation"],
              "options": meta["options"], "salvaged": True, "summary": {"steps": meta["step"]}}
    (out / "config.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for name in EXPORTED[2:]:
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, out / ("samples.png" if name.endswith(".png") else name))
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffusion.training.upscale_trainer", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
