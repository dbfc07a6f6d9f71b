"""`atelier train vae|unet|finetune|distill|distill-data|package|package-fast|concepts`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning
# threads burn their share waiting at barriers (measured here: 2 threads 0.68 vs 0.41 steps/s
# for 1 thread with PASSIVE; 2 spinning threads were slower than 1). Must precede importing torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _train_config(args: argparse.Namespace):
    from diffusion.training.common import TrainConfig

    return TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                       ema_decay=args.ema_decay, grad_clip=args.grad_clip, seed=args.seed, bf16=args.bf16,
                       threads=args.threads, device=args.device, sample_every=args.sample_every,
                       checkpoint_minutes=args.checkpoint_minutes, time_limit_minutes=args.time_limit,
                       keep_at=tuple(args.keep_at))


def _vae(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffusion.nets.config import VAEConfig
    from diffusion.training.vae_trainer import train_vae

    cfg = VAEConfig(channels=tuple(args.channels), latent_channels=args.latent_channels,
                    num_res_blocks=args.num_res_blocks)
    s = train_vae(Path(args.data), Path(args.run_dir), cfg, _train_config(args), kl_weight=args.kl_weight,
                  progress=tqdm, resume=not args.fresh)
    print(json.dumps({k: v for k, v in s.items() if k != "losses"}))
    return 0


def _unet(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffusion.nets.config import LatentConfig, ModelConfig, UNetConfig, VAEConfig
    from diffusion.training.unet_trainer import train_unet

    shipped = {}
    if args.vae_from:
        # A shipped model's frozen VAE: its latent scale and shift and its style ids come along,
        # so the new UNet is a drop-in successor that shares the autoencoder.
        mc = ModelConfig.load(Path(args.vae_from) / "config.json")
        shipped = {"vae_cfg": VAEConfig.from_dict(mc.vae), "latent_cfg": LatentConfig.from_dict(mc.latent),
                   "styles": list(mc.styles)}
    cfg = UNetConfig(channels=tuple(args.channels), num_res_blocks=args.num_res_blocks,
                     embed_dim=args.embed_dim, heads=args.heads,
                     attention=tuple([False] * (len(args.channels) - args.attention_levels)
                                     + [True] * args.attention_levels))
    s = train_unet(Path(args.data), Path(args.vae_from or args.vae_run), Path(args.run_dir), cfg,
                   _train_config(args), progress=tqdm, resume=not args.fresh, **shipped)
    print(json.dumps({k: v for k, v in s.items() if k != "losses"}))
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffusion.nets.shipped import latest_shipped
    from diffusion.training.finetune import finetune

    model = Path(args.model) if args.model else latest_shipped()
    s = finetune(model, Path(args.data), Path(args.run_dir), _train_config(args), progress=tqdm,
                 resume=not args.fresh)
    print(json.dumps({k: v for k, v in s.items() if k != "losses"}))
    return 0


def _bundle_of(args: argparse.Namespace) -> Path:
    """--data as given when it is a distillation bundle; a dataset .npz is bundled first."""
    from diffusion.training.distill_bundle import build_bundle
    from diffusion.training.unet_trainer import GRID_PROMPTS

    data = Path(args.data)
    if data.is_dir():
        return data
    out = Path(args.out) if getattr(args, "out", None) else Path(args.run_dir) / "bundle"
    if not (out / "bundle.json").is_file():
        build_bundle(Path(args.teacher), data, out, GRID_PROMPTS)
    return out


def _distill_data(args: argparse.Namespace) -> int:
    print(f"bundle: {_bundle_of(args)}")
    return 0


def _distill(args: argparse.Namespace) -> int:
    from diffusion.training.common import TrainConfig
    from diffusion.training.distill import DistillConfig, distill

    if not args.teacher:
        from diffusion.nets.shipped import latest_shipped

        args.teacher = str(latest_shipped())
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                      weight_decay=0.0, ema_decay=args.ema_decay, grad_clip=args.grad_clip, seed=args.seed,
                      threads=args.threads, device=args.device, log_every=args.log_every,
                      checkpoint_minutes=args.checkpoint_minutes, time_limit_minutes=args.max_minutes,
                      tensorboard=False)
    dcfg = DistillConfig(w_min=args.w_min, w_max=args.w_max, num_scales=args.num_scales, skip=args.skip,
                         solver=args.solver, target_decay=args.target_decay)
    s = distill(Path(args.teacher), _bundle_of(args), Path(args.run_dir), cfg, dcfg, resume=not args.fresh,
                init_student=Path(args.init_student) if args.init_student else None)
    print(json.dumps(s))
    return 0


def _upscale(args: argparse.Namespace) -> int:
    from diffusion.training.upscale_trainer import run

    return run(args)


def _package(args: argparse.Namespace) -> int:
    from diffusion.training.package import package_model

    try:
        files = package_model(Path(args.root), Path(args.out), Path(args.data_card) if args.data_card else None,
                              Path(args.contact) if args.contact else None, command=args.command_line,
                              vae_from=Path(args.vae_from) if args.vae_from else None,
                              notes=Path(args.notes) if args.notes else None, overwrite=args.overwrite)
    except ValueError as exc:
        raise SystemExit(f"atelier train package: {exc}") from None
    for k, p in files.items():
        print(f"{k}: {p}")
    return 0


def _package_fast(args: argparse.Namespace) -> int:
    from diffusion.training.package_fast import package_student

    if len(args.run_command) not in (0, len(args.run_metrics)):
        raise SystemExit("atelier train package-fast: give one --run-command per --run-metrics (or none)")
    commands = args.run_command or [""] * len(args.run_metrics)
    runs = [(Path(m), f"run {i + 1}", c) for i, (m, c) in enumerate(zip(args.run_metrics, commands, strict=True))]
    try:
        files = package_student(Path(args.run), Path(args.teacher), Path(args.out), runs=runs,
                                guidance_scale=args.guidance, steps=args.steps, ramp_sigma_min=args.ramp_sigma_min,
                                command=args.command_line, overwrite=args.overwrite)
    except ValueError as exc:
        raise SystemExit(f"atelier train package-fast: {exc}") from None
    for k, p in files.items():
        print(f"{k}: {p}")
    return 0


def _common(p: argparse.ArgumentParser, steps: int, batch: int, lr: float, channels: list[int]) -> None:
    p.add_argument("--data", required=True, help="dataset .npz from `atelier data`")
    p.add_argument("--run-dir", required=True, help="logs, samples and checkpoints (resumes if present)")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                   help="bf16 autocast (default off: slower than fp32 for these small networks on the CPUs here)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--sample-every", type=int, default=500)
    p.add_argument("--checkpoint-minutes", type=float, default=3.0)
    p.add_argument("--time-limit", type=float, default=0.0, help="minutes; stop and save when reached")
    p.add_argument("--keep-at", type=float, nargs="+", default=[], metavar="FRACTION",
                   help="also keep the checkpoints at these fractions of --steps (e.g. 0.25) as "
                        "checkpoints/step_NNNNNN.safetensors")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --run-dir")
    p.add_argument("--channels", type=int, nargs="+", default=channels)
    p.add_argument("--num-res-blocks", type=int, default=2)


def _concepts(args: argparse.Namespace) -> int:
    import shlex
    import sys

    import numpy as np
    import torch

    from diffusion.data import build, sources
    from diffusion.data.concept_labels import folds, label_matrix
    from diffusion.data.dataset import load_dataset
    from diffusion.training.concepts import ConceptTrainOptions, concepts_config, evaluate, write_package

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    ds = load_dataset(data)
    cache = Path(args.cache) if args.cache else build.default_cache()
    metadata = sources.load_metadata(sources.fetch_package(*sources.METADATA_PACKAGE, cache / "npm"))
    labels = label_matrix(ds.emoji_ids, metadata)
    opts = ConceptTrainOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               max_false_flags=args.max_false_flags)
    model, report = evaluate(ds.images, labels, folds(ds.emoji_ids, ds.split), ds.emoji_ids,
                             concepts_config(), opts, log=lambda m: print(m, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Out-of-fold scores, for choosing thresholds again without retraining (not part of the package).
    np.savez_compressed(out.with_name(out.name + ".scores.npz"), oof=report.pop("oof_scores"), labels=labels,
                        folds=folds(ds.emoji_ids, ds.split), emoji_ids=ds.emoji_ids)
    card_path = data.with_suffix(".card.json")
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.exists() else {}
    card = {**card, "dataset": build.shown_path(data), "labels": "diffusion/data/concept_labels.py rules over "
            f"{sources.METADATA_PACKAGE[0]}@{sources.METADATA_PACKAGE[1]} emoji.json"}
    licences = [{"style": s, "license": src.licence, "attribution": src.attribution,
                 "source": f"{src.registry}:{src.package}@{src.version}"}
                for s, src in sources.SOURCES.items() if s in ds.styles]
    command = "atelier train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    out = write_package(out, model, report, card, licences, command)
    print(json.dumps({"package": str(out), "thresholds": report["thresholds"],
                      "held_out": {c: r["held_out"] for c, r in report["concepts"].items()},
                      "positives": int((labels == 1).any(axis=1).sum()), "images": int(len(np.asarray(labels)))}))
    return 0


def register(parser: argparse.ArgumentParser, name: str = "train") -> None:
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="WHAT", required=True)
    v = sub.add_parser("vae", help="train the RGBA VAE")
    _common(v, 1500, 32, 1e-3, [32, 64, 128])
    v.add_argument("--latent-channels", type=int, default=4)
    v.add_argument("--kl-weight", type=float, default=1e-5)
    v.set_defaults(func=_vae, num_res_blocks=1)
    u = sub.add_parser("unet", help="train the latent UNet (EDM) on a dataset, given a trained VAE run")
    _common(u, 10000, 64, 5e-4, [64, 128])
    vae = u.add_mutually_exclusive_group(required=True)
    vae.add_argument("--vae-run", help="run dir of `atelier train vae`")
    vae.add_argument("--vae-from", help="a shipped model folder whose VAE, latent scale/shift and styles to reuse")
    u.add_argument("--embed-dim", type=int, default=256)
    u.add_argument("--heads", type=int, default=4)
    u.add_argument("--attention-levels", type=int, default=2, help="lowest-resolution levels with attention")
    u.set_defaults(func=_unet)
    f = sub.add_parser("finetune", help="continue the shipped model on a folder dataset (a new style)")
    _common(f, 1000, 32, 1e-4, [64, 128])
    f.add_argument("--model", help="shipped model folder (default: the newest version under models/atelier-emoji)")
    f.set_defaults(func=_finetune)
    dd = sub.add_parser("distill-data", help="precompute a distillation bundle: latents, token states, teacher files")
    dd.add_argument("--teacher", required=True, help="shipped teacher model folder")
    dd.add_argument("--data", required=True, help="dataset .npz from `atelier data`")
    dd.add_argument("--out", required=True, help="bundle folder to write")
    dd.set_defaults(func=_distill_data)
    d = sub.add_parser("distill", help="latent consistency distillation of a shipped model (1-4 step sampling)")
    d.add_argument("--teacher", help="teacher model folder (default: the newest atelier-emoji)")
    d.add_argument("--data", required=True, help="a bundle from `train distill-data`, or a dataset .npz "
                                                 "(bundled into RUN_DIR/bundle first)")
    d.add_argument("--run-dir", required=True, help="logs, samples and checkpoints (resumes if present)")
    d.add_argument("--device", default="cpu", help="cpu or cuda")
    d.add_argument("--max-minutes", type=float, default=0.0,
                   help="wall-clock budget of the training loop; the cosine schedule is sized to the steps that fit")
    d.add_argument("--steps", type=int, default=20000, help="at most this many steps")
    d.add_argument("--batch-size", type=int, default=64)
    d.add_argument("--lr", type=float, default=2e-4)
    d.add_argument("--warmup", type=int, default=100)
    d.add_argument("--ema-decay", type=float, default=0.999, help="EMA of the shipped student weights")
    d.add_argument("--grad-clip", type=float, default=1.0)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    d.add_argument("--log-every", type=int, default=10)
    d.add_argument("--checkpoint-minutes", type=float, default=3.0)
    d.add_argument("--w-min", type=float, default=2.0, help="lowest guidance scale the student learns")
    d.add_argument("--w-max", type=float, default=8.0, help="highest guidance scale the student learns")
    d.add_argument("--num-scales", type=int, default=50, help="N: points of the Karras sigma grid")
    d.add_argument("--init-student", help="start the student from these weights (an earlier run's "
                                          "unet_ema.safetensors) instead of the teacher's")
    d.add_argument("--skip", type=int, default=3, help="k: grid points one teacher ODE step spans")
    d.add_argument("--solver", choices=["euler", "heun"], default="heun", help="the teacher's ODE step")
    d.add_argument("--target-decay", type=float, default=0.95, help="EMA decay of the target network")
    d.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --run-dir")
    d.set_defaults(func=_distill)
    s = sub.add_parser("upscale", help="train the x4 upscaler (diffusion or the CNN baseline) on the 128² set")
    from diffusion.training.upscale_args import add_arguments

    add_arguments(s)
    s.set_defaults(func=_upscale)
    p = sub.add_parser("package", help="copy a finished run's EMA weights, configs and figures into a model folder")
    p.add_argument("--root", required=True, help="pipeline run root holding vae/ and unet/, or a UNet run on a "
                                                 "packaged model's VAE (a `train finetune` --run-dir)")
    p.add_argument("--out", required=True, help="the new version's folder, e.g. models/atelier-emoji/3")
    p.add_argument("--vae-from", help="a packaged model folder whose VAE the UNet run was trained on "
                                      "(`train unet --vae-from`); its weights and provenance are reused")
    p.add_argument("--notes", help="a Markdown file appended to the model card")
    p.add_argument("--overwrite", action="store_true", help="replace a model already packaged in --out")
    p.add_argument("--data-card", help="the dataset's .card.json")
    p.add_argument("--contact", help="the dataset's contact sheet PNG")
    p.add_argument("--command-line", default="", help="training command recorded in the model card")
    p.set_defaults(func=_package)

    pf = sub.add_parser("package-fast", help="package a distilled student (atelier train distill) as a fast model "
                                             "folder, with its teacher's VAE")
    pf.add_argument("--run", required=True, help="the final distillation run (config.json, unet_ema.safetensors)")
    pf.add_argument("--teacher", required=True, help="the packaged teacher folder (models/atelier-emoji/2)")
    pf.add_argument("--out", required=True, help="folder to write (then: atelier export OUT --include-source)")
    pf.add_argument("--run-metrics", nargs="+", required=True,
                    help="metrics.jsonl of every run that led to the weights, oldest first")
    pf.add_argument("--run-command", action="append", default=[], help="each run's command, in the same order")
    pf.add_argument("--steps", type=int, default=4, help="default steps (default 4)")
    pf.add_argument("--guidance", type=float, help="default guidance scale (default: the teacher's)")
    pf.add_argument("--ramp-sigma-min", type=float, default=0.5,
                    help="where the sampling ramp ends (default 0.5, docs/MODEL.md \"Fast mode\")")
    pf.add_argument("--command-line", default="", help="the packaging command, for the provenance")
    pf.add_argument("--overwrite", action="store_true")
    pf.set_defaults(func=_package_fast)

    c = sub.add_parser("concepts", help="the output concept classifier from the emoji metadata's labels: "
                                        "cross-validated by subject, thresholds, the package to export")
    c.add_argument("--data", required=True, help="emoji dataset .npz from `atelier data emoji`")
    c.add_argument("--out", required=True, help="package folder to write (then: atelier export OUT ...)")
    c.add_argument("--cache", help="package cache holding emoji.json (default $ATELIER_DATA_DIR or ~/.cache/atelier)")
    c.add_argument("--steps", type=int, default=1000, help="optimizer steps of each network (default 1000)")
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--lr", type=float, default=3e-3)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--max-false-flags", type=float, default=0.002,
                   help="share of held-out benign images each concept's threshold may flag (default 0.002)")
    c.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    c.set_defaults(func=_concepts)
