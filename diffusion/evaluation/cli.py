"""`atelier eval classifier` (train the domain classifier) and `atelier eval model` (evaluate a
checkpoint). Progress bars live here, never in the library modules."""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from pathlib import Path

from diffusion.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER

DEFAULT_CLASSIFIER = Path("models/atelier-emoji/classifier")


def _default_data(size: int = 32) -> Path:
    from diffusion.data.build import default_cache

    return default_cache() / "datasets" / f"emoji-{size}.npz"


def _command() -> str | None:
    """The command line, when this process is the `atelier` program (not a test calling main())."""
    argv = sys.argv[1:]
    return "atelier " + " ".join(shlex.quote(a) for a in argv) if argv[:1] == ["eval"] else None


def _classifier(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from diffusion.data import load_dataset
    from diffusion.evaluation.classifier import save_classifier
    from diffusion.evaluation.train_classifier import TrainOptions, config_for, train_classifier

    torch.set_num_threads(args.threads)
    data = Path(args.data) if args.data else _default_data()
    ds = load_dataset(data)
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    model, metrics = train_classifier(ds, config_for(ds), opts, progress=lambda it: tqdm(it, desc="classifier"))
    metrics["data"] = str(data)
    metrics["data_sha256"] = hashlib.sha256(data.read_bytes()).hexdigest()
    metrics["command"] = _command()
    save_classifier(model, args.out, metrics)
    v = metrics["validation"]
    print(f"validation accuracy: category {v['category']:.3f}, style {v['style']:.3f} ({v['images']} images)")
    print(f"saved {args.out}")
    return 0


def _default_label(meta: dict) -> str:
    """models/atelier-emoji/1 -> "atelier-emoji/1"; RUN/unet/checkpoints/latest.safetensors -> "unet"."""
    path = Path(meta["checkpoint"])
    return f"{path.parent.name}/{path.name}" if meta.get("kind") == "shipped" else path.parent.parent.name


def _model(args: argparse.Namespace) -> int:
    import json
    import platform
    import time

    import torch
    from tqdm import tqdm

    from diffusion.data import load_dataset
    from diffusion.data.build import shown_path
    from diffusion.data.images import grid
    from diffusion.evaluation.classifier import load_classifier
    from diffusion.evaluation.evaluate import evaluate, model_contact_sheet
    from diffusion.evaluation.pipeline import load_latent_model
    from diffusion.evaluation.report import write_report

    torch.set_num_threads(args.threads)
    model, meta = load_latent_model(args.checkpoint, vae_run=args.vae_run, weights=args.weights)
    if args.ramp_sigma_min is not None:
        model.ramp_sigma_min = args.ramp_sigma_min
    data = Path(args.data) if args.data else Path(meta.get("dataset") or _default_data()).expanduser()
    ds = load_dataset(data)
    classifier = load_classifier(args.classifier)
    baselines = {}
    for item in args.baseline:
        label, _, path = item.partition("=")
        baselines[label] = json.loads(Path(path).read_text(encoding="utf-8"))
    # A shipped model is judged at the guidance it serves with; a training checkpoint at the
    # packager's default, so a checkpoint and the model it became are compared like for like.
    guidance = args.guidance if args.guidance is not None else float(
        meta.get("defaults", {}).get("guidance_scale", DEFAULT_GUIDANCE))
    options = {"steps": args.steps, "sampler": args.sampler, "guidance": guidance,
               "batch_size": args.batch_size}
    report, images = evaluate(model, classifier, ds, split=args.split, limit=args.limit,
                              seeds_per_prompt=args.seeds_per_prompt, seed=args.seed,
                              progress=lambda it: tqdm(it, desc="generate", unit="batch"), **options)
    planned = meta.get("train", {}).get("steps")
    clf_accuracy = json.loads((Path(args.classifier) / "metrics.json").read_text(encoding="utf-8"))
    report = {
        "model": {"label": args.label or _default_label(meta),
                  "checkpoint": meta["checkpoint"], "weights": args.weights, "step": meta.get("step"),
                  "planned_steps": planned, "dataset": shown_path(data)},
        **report,
        "classifier": {"path": str(args.classifier), "train": clf_accuracy["train"],
                       "validation": clf_accuracy["validation"]},
        "command": _command(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
    }
    out = Path(args.out)
    paths = write_report(report, out, baselines)
    grid(images[:min(len(images), 128)], cols=16, scale=2).save(out / "eval_samples.png")
    if args.contact_sheet:
        sheet = model_contact_sheet(model, seeds=tuple(args.contact_seeds),
                                    progress=lambda it: tqdm(it, desc="contact sheet", unit="batch"), **options)
        sheet.save(out / "contact_sheet.png")
    g, f = report["sets"]["generated"], report["sets"]["real"]
    for key in ("fid", "kid", "category_adherence", "style_adherence"):
        print(f"{key}: generated {g[key]:.3f}, real floor {f[key]:.3f}")
    print(f"wrote {paths['json']}, {paths['markdown']}")
    return 0


def _upscale(args: argparse.Namespace) -> int:
    import json
    import platform
    import time

    import torch
    from tqdm import tqdm

    from diffusion.data import load_dataset
    from diffusion.data.build import shown_path
    from diffusion.evaluation.classifier import load_classifier
    from diffusion.evaluation.upscale_eval import contact_sheet, evaluate_upscaler, markdown
    from diffusion.nets.upscaler_package import load_package

    torch.set_num_threads(args.threads)
    package = load_package(Path(args.package))
    data = Path(args.data) if args.data else _default_data(128)
    report, outputs = evaluate_upscaler(
        package, load_dataset(data), load_classifier(args.classifier), steps=tuple(args.steps), limit=args.limit,
        seed=args.seed, batch_size=args.batch_size, aug_levels=tuple(args.aug_levels),
        progress=lambda it: tqdm(list(it), desc="methods", unit="method"))
    label = args.label or Path(args.package).name
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generated_lines: list[str] = []
    if args.base_model:
        generated_lines = _upscale_generated(args, package, report, out)
    report.update(package=str(args.package), dataset=shown_path(data), classifier=str(args.classifier),
                  command=_command(),
                  date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  machine=f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = markdown(report, label)
    if generated_lines:
        text = text.replace("\n## Tiles\n", "\n" + "\n".join(generated_lines) + "\n## Tiles\n", 1)
    (out / "EVAL.md").write_text(text, encoding="utf-8")
    contact_sheet(outputs, f"diffusion-{report['default_steps']}").save(out / "contact_sheet.png")
    for name, row in report["methods"].items():
        print(f"{name}: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f}, alpha MAE {255 * row['alpha_mae']:.2f}, "
              f"perceptual {row['perceptual']:.4f}, round trip {row['roundtrip_psnr']:.2f} dB")
    for g in report["goals"]:
        print(f"{'met' if g['met'] else 'NOT met'}: {g['goal']} ({g['value']:.4g} vs {g['target']:.4g})")
    print(f"wrote {out / 'eval.json'}, {out / 'EVAL.md'}, {out / 'contact_sheet.png'}")
    return 0


def _upscale_generated(args: argparse.Namespace, package, report: dict, out: Path) -> list[str]:
    """The base model's generations upscaled (diffusion/evaluation/upscale_generated.py): adds the
    report's `generated` section and goals, writes generated_sheet.png, returns EVAL.md's section."""
    from tqdm import tqdm

    from diffusion.data import load_dataset
    from diffusion.data.build import shown_path
    from diffusion.evaluation.classifier import load_classifier
    from diffusion.evaluation.pipeline import load_latent_model
    from diffusion.evaluation.upscale_eval import contact_sheet
    from diffusion.evaluation.upscale_generated import evaluate_generated, generated_markdown

    model, meta = load_latent_model(args.base_model)
    defaults = meta.get("defaults", {})
    prompts = Path(args.base_data) if args.base_data else Path(meta.get("dataset") or _default_data(32)).expanduser()
    hires = Path(args.data) if args.data else _default_data(128)
    generated, images = evaluate_generated(
        package, model, load_classifier(args.classifier), load_dataset(prompts), load_dataset(hires),
        sampler=defaults.get("sampler", DEFAULT_SAMPLER), steps=int(defaults.get("steps", 20)),
        guidance=float(defaults.get("guidance_scale", DEFAULT_GUIDANCE)), limit=args.base_limit, seed=args.seed,
        batch_size=args.batch_size, progress=lambda it: tqdm(list(it), desc="generated, upscaled", unit="method"))
    base_label = _default_label(meta) if meta.get("kind") == "shipped" else str(args.base_model)
    generated.update(base_model=str(args.base_model), prompt_dataset=shown_path(prompts))
    report["generated"] = generated
    report["goals"] = report["goals"] + generated["goals"]
    sheet = {"lr": images["base"], **{k: v for k, v in images.items() if k != "base"}}
    side = images["base"].shape[1]
    contact_sheet(sheet, generated["shipped"], rows=12, lr_label=f"base {side}px, x4").save(out / "generated_sheet.png")
    for name, row in generated["methods"].items():
        print(f"generated {name}: category {row['category_adherence']:.3f}, style {row['style_adherence']:.3f}"
              + (f", FID vs train {row['fid_vs_train']:.2f}, vs held-out {row['fid_vs_held_out']:.2f}"
                 if "fid_vs_train" in row else ""))
    return generated_markdown(generated, base_label) + [
        "The sheet `generated_sheet.png`: 12 of these prompts in rows; columns the base model's generation "
        "(nearest x4), "
        "bicubic, the CNN and the shipped default.", ""]


def _concepts(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    import torch
    from tqdm import tqdm

    from diffusion.data import build, load_dataset, sources
    from diffusion.data.concept_labels import label_matrix
    from diffusion.evaluation.concepts_generated import (
        add_to_package,
        evaluate_generated,
        generated_images,
        load_package_net,
    )
    from diffusion.evaluation.pipeline import load_shipped_model

    torch.set_num_threads(args.threads)
    package = Path(args.package)
    net, thresholds = load_package_net(package)
    ds = load_dataset(args.data)
    cache = Path(args.cache) if args.cache else build.default_cache()
    labels = label_matrix(ds.emoji_ids, sources.load_metadata(
        sources.fetch_package(*sources.METADATA_PACKAGE, cache / "npm")))
    model, meta = load_shipped_model(args.model)
    defaults = meta["defaults"]
    how = dict(seeds=args.seeds, steps=args.steps or defaults.get("steps", 20),
               sampler=args.sampler or defaults.get("sampler", "unipc"),
               guidance=args.guidance or defaults.get("guidance_scale", 5.0))
    cached = Path(args.images) if args.images else None
    if cached is not None and cached.exists():
        images = np.load(cached, allow_pickle=False)["images"]
    else:
        with torch.no_grad():
            images = generated_images(model, ds, labels, progress=tqdm, **how)
        if cached is not None:
            np.savez_compressed(cached, images=images)
    if args.generate_only:
        return 0
    g = evaluate_generated(images, net, thresholds, ds, labels, **how)
    label = "/".join(Path(args.model).resolve().parts[-2:])
    add_to_package(package, g, label)
    print(json.dumps({"package": str(package), "generated": g}))
    return 0


def register(parser: argparse.ArgumentParser, name: str = "eval") -> None:
    from diffusion.sampler_catalog import SAMPLER_NAMES

    sub = parser.add_subparsers(dest=f"{name}_command", metavar="WHAT", required=True)

    c = sub.add_parser("classifier", help="train the domain classifier (category + style) used by the metrics")
    c.add_argument("--data", help="dataset .npz (default <cache>/datasets/emoji-32.npz)")
    c.add_argument("--out", default=str(DEFAULT_CLASSIFIER), help=f"output folder (default {DEFAULT_CLASSIFIER})")
    c.add_argument("--epochs", type=int, default=24)
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: leave cores to training)")
    c.set_defaults(func=_classifier)

    m = sub.add_parser("model", help="evaluate a UNet checkpoint: FID/KID, IS analogue, precision/recall, adherence")
    m.add_argument("checkpoint", help="shipped model folder (models/atelier-emoji/1), UNet run folder, or "
                                      "checkpoint .safetensors (JSON meta beside it)")
    m.add_argument("--out", required=True, help="folder for eval.json, EVAL.md, eval_samples.png, contact_sheet.png")
    m.add_argument("--label", help="name of this model in the report (default: the run folder's name)")
    m.add_argument("--data", help="dataset .npz (default: the one the checkpoint was trained on)")
    m.add_argument("--vae-run", help="VAE run folder (default: the one the checkpoint names)")
    m.add_argument("--weights", choices=["ema", "model"], default="ema", help="EMA (shipped) or raw weights")
    m.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER), help="domain classifier folder")
    m.add_argument("--split", choices=["validation", "train"], default="validation",
                   help="whose captions and styles are the prompts (default validation: unseen subjects)")
    m.add_argument("--limit", type=int, help="use an evenly spaced subset of N prompts")
    m.add_argument("--seeds-per-prompt", type=int, default=1)
    m.add_argument("--seed", type=int, default=0, help="first seed; image i gets seed + i")
    m.add_argument("--steps", type=int, default=20)
    m.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=sorted(SAMPLER_NAMES),
                   help=f"registered sampler (default {DEFAULT_SAMPLER})")
    m.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's own "
                                                   f"default for a shipped model, else {DEFAULT_GUIDANCE})")
    m.add_argument("--ramp-sigma-min", type=float,
                   help="end the Karras ramp at this sigma instead of the model's own (a consistency model's "
                        "config names its own, docs/MODEL.md \"Fast mode\")")
    m.add_argument("--batch-size", type=int, default=32)
    m.add_argument("--baseline", action="append", default=[], metavar="LABEL=EVAL.JSON",
                   help="add another run's generated figures as a column (e.g. quarter=runs/quarter/eval.json)")
    m.add_argument("--contact-sheet", action=argparse.BooleanOptionalAction, default=True)
    m.add_argument("--contact-seeds", type=int, nargs="+", default=[0, 1])
    m.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: leave cores to training)")
    m.set_defaults(func=_model)

    u = sub.add_parser("upscale", help="evaluate an upscaler package against bicubic on held-out 128² images")
    u.add_argument("package", help="upscaler package folder (config.json with \"kind\": \"upscaler\" and its "
                                   "safetensors), e.g. a version exported with --include-source")
    u.add_argument("--out", required=True, help="folder for eval.json, EVAL.md, contact_sheet.png")
    u.add_argument("--label", help="name in the report (default: the package folder's name)")
    u.add_argument("--data", help="128² dataset .npz (default <cache>/datasets/emoji-128.npz)")
    u.add_argument("--classifier", default=str(DEFAULT_CLASSIFIER), help="domain classifier folder")
    u.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="diffusion step counts to measure")
    u.add_argument("--aug-levels", type=float, nargs="*", default=[],
                   help="also measure these augmentation levels at the default steps (to choose the shipped one)")
    u.add_argument("--limit", type=int, help="use an evenly spaced subset of N held-out images")
    u.add_argument("--seed", type=int, default=0, help="first seed; image i gets seed + i")
    u.add_argument("--batch-size", type=int, default=32)
    u.add_argument("--base-model", help="also upscale this base model's generations for its validation prompts "
                                        "(shipped folder, e.g. models/atelier-emoji/2, at its default sampler, "
                                        "steps and guidance): adherence and FID at 128²")
    u.add_argument("--base-data", help="the base model's 32² dataset, whose validation rows are the prompts "
                                       "(default: the one it names, else <cache>/datasets/emoji-32.npz)")
    u.add_argument("--base-limit", type=int, help="use an evenly spaced subset of N prompts")
    u.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: leave cores to training)")
    u.set_defaults(func=_upscale)
    k = sub.add_parser("concepts", help="the concept classifier on the base model's generations: concept and "
                                        "benign prompts, flagged at its thresholds (into the package's EVAL.md)")
    k.add_argument("package", help="concept-classifier package from `atelier train concepts`")
    k.add_argument("--data", required=True, help="the emoji dataset .npz it was trained on (prompts and labels)")
    k.add_argument("--model", default="models/atelier-emoji/2", help="shipped base model folder")
    k.add_argument("--cache", help="package cache holding emoji.json (default $ATELIER_DATA_DIR or ~/.cache/atelier)")
    k.add_argument("--seeds", type=int, default=2, help="seeds per concept prompt (default 2)")
    k.add_argument("--steps", type=int, help="default: the model's")
    k.add_argument("--sampler", help="default: the model's")
    k.add_argument("--guidance", type=float, help="default: the model's")
    k.add_argument("--images", help="an .npz of the generations: read when it exists, else written (the "
                                    "generations do not depend on the classifier)")
    k.add_argument("--generate-only", action="store_true", help="make --images and stop")
    k.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    k.set_defaults(func=_concepts)
