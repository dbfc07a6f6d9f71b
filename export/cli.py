"""`atelier export SOURCE --name NAME --version N --out models/`: the command line of the
export stage. The progress bar lives here only; the library reports through a callback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(parser: argparse.ArgumentParser, name: str = "export") -> None:
    parser.add_argument("source", type=Path, help="Atelier checkpoint folder or diffusers pipeline folder")
    parser.add_argument("--name", required=True, help="model name in the repository")
    parser.add_argument("--version", required=True, help="version folder name (a number)")
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository folder (default: models)")
    parser.add_argument("--tiling", action="store_true", help="also export circular-padding UNet and decoder")
    parser.add_argument("--fp16", action="store_true", help="also write fp16 variants (for GPUs), parity-checked")
    parser.add_argument("--optimize", action="store_true", help="also write ONNX Runtime offline-optimised variants")
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                        help="torch ONNX exporter (default: torchscript, see export/torch_export.py)")
    parser.add_argument("--max-file-mb", type=float, default=20.0,
                        help="largest file written; bigger weights go to several external-data files")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument("--include-source", action="store_true",
                        help="copy the checkpoint's own files (weights, config, cards, pictures) into the version "
                             "and list them in the manifest: one self-contained, hash-checked folder")
    parser.add_argument("--reuse-from", type=Path,
                        help="a shipped version folder whose VAE and text encoder this source shares (a distilled "
                             "student's teacher): its files are copied byte for byte and parity-checked against "
                             "this source instead of exported again")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tqdm import tqdm

    from export.parity import ParityError
    from export.pipeline import ExportError, ExportOptions, export_model

    options = ExportOptions(
        name=args.name, version=str(args.version), out=args.out, tiling=args.tiling, fp16=args.fp16,
        optimize=args.optimize, exporter=args.exporter,
        max_file_bytes=int(args.max_file_mb * 1e6), overwrite=args.overwrite,
        include_source=args.include_source, reuse_from=args.reuse_from,
    )
    bar = tqdm(desc="export", unit="step", leave=True, file=sys.stderr, bar_format="{desc}: {n} steps {elapsed}")

    def progress(message: str) -> None:
        bar.set_description_str(message)
        bar.update(1)

    try:
        manifest = export_model(args.source, options, progress)
    except (ExportError, ParityError, FileNotFoundError) as exc:
        bar.close()
        print(f"atelier export: {exc}", file=sys.stderr)
        return 1
    bar.close()
    folder = Path(args.out) / manifest.name / manifest.version
    worst = min((p["min_cosine"] for p in manifest.parity.values()), default=1.0)
    print(f"exported {manifest.name}/{manifest.version} to {folder}: {len(manifest.files)} files, "
          f"worst parity cosine {worst:.6f}")
    return 0
