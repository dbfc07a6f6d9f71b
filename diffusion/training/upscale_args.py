"""Arguments of `atelier train upscale` (and ``python -m diffusion.training.upscale_trainer``),
kept free of torch so that building the command line imports nothing heavy."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=["diffusion", "cnn"], default="diffusion")
    p.add_argument("--data", required=True, help="128² dataset .npz from `atelier data build-hires`")
    p.add_argument("--run-dir", required=True, help="checkpoints, logs and samples (resumes if present)")
    p.add_argument("--export-dir", help="at the end copy only the EMA weights, config.json, metrics and the "
                                        "sample grid here")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--max-minutes", type=float, default=0.0, help="wall-clock limit: stop, save and export")
    p.add_argument("--steps", type=int, default=None,
                   help="planned steps (the cosine's length); omitted with --max-minutes: the cosine runs "
                        "over the wall-clock limit instead (not resumable bit-exactly)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=64, help="HR crop side (128: whole images)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for cuda, off for cpu)")
    p.add_argument("--width", type=int, nargs="+", default=[64, 128], help="body channels per level")
    p.add_argument("--blocks", type=int, nargs="+", default=[2, 2], help="residual blocks per level")
    p.add_argument("--sample-every", type=int, default=1000)
    p.add_argument("--checkpoint-minutes", type=float, default=3.0)
    p.add_argument("--n-val", type=int, default=64, help="held-out images in the validation PSNR")
    p.add_argument("--init-weights", help="start from these weights (an earlier run's upscaler_ema.safetensors, "
                                          "same architecture) instead of a random initialisation")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --run-dir")
