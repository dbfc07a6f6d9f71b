"""`atelier eval classifier` (train the domain classifier) and `atelier eval model` (evaluate a
checkpoint). Progress bars live here, never in the library modules."""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from pathlib import Path

DEFAULT_CLASSIFIER = Path("models/atelier-emoji/classifier")


def _default_data(size: int = 32) -> Path:
    from diffusion.data.build import default_cache

    return default_cache() / "datasets" / f"emoji-{size}.npz"


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
    metrics["command"] = "atelier " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    save_classifier(model, args.out, metrics)
    v = metrics["validation"]
    print(f"validation accuracy: category {v['category']:.3f}, style {v['style']:.3f} ({v['images']} images)")
    print(f"saved {args.out}")
    return 0


def register(parser: argparse.ArgumentParser, name: str = "eval") -> None:
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
