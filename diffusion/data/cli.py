"""`atelier data emoji`, `atelier data build-hires` and `atelier data folder PATH`."""

from __future__ import annotations

import argparse
from pathlib import Path


def _emoji(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffusion.data import build, sources

    cache = Path(args.cache) if args.cache else build.default_cache()
    ds = build.build_emoji(cache, size=args.size, styles=args.styles, limit=args.limit, progress=tqdm)
    out = Path(args.out) if args.out else cache / "datasets"
    paths = build.write_dataset(ds, out, f"emoji-{args.size}", sources.SOURCES)
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0


def _hires(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffusion.data import build, hires

    cache = Path(args.cache) if args.cache else build.default_cache()
    ds = hires.build_hires(cache, styles=args.styles, limit=args.limit, progress=tqdm)
    out = Path(args.out) if args.out else cache / "datasets"
    paths = build.write_dataset(ds, out, f"emoji-{hires.HIRES_SIZE}", hires.HIRES_SOURCES)
    for k, p in paths.items():
        print(f"{k}: {p}")
    return 0


def _folder(args: argparse.Namespace) -> int:
    from diffusion.data import build

    ds = build.build_folder(Path(args.path), size=args.size, style=args.style)
    out = Path(args.out) if args.out else build.default_cache() / "datasets"
    name = f"folder-{ds.styles[1]}-{args.size}"
    for k, p in build.write_dataset(ds, out, name).items():
        print(f"{k}: {p}")
    return 0


def register(parser: argparse.ArgumentParser, name: str = "data") -> None:
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="DATASET", required=True)
    e = sub.add_parser("emoji", help="multi-style emoji from npm packages (Noto, Twemoji, Fluent)")
    e.add_argument("--size", type=int, default=32, help="square resolution in pixels (default 32)")
    e.add_argument("--styles", nargs="+", default=["noto", "twemoji", "fluent-flat"],
                   help="styles to include: noto twemoji fluent-flat fluent-color")
    e.add_argument("--cache", help="package cache (default $ATELIER_DATA_DIR or ~/.cache/atelier)")
    e.add_argument("--out", help="output folder (default <cache>/datasets)")
    e.add_argument("--limit", type=int, help="keep the first N emoji per style (quick tests)")
    e.set_defaults(func=_emoji)
    h = sub.add_parser("build-hires", help="128x128 emoji for the x4 upscaler (Noto font bitmaps, Twemoji and "
                                            "Fluent SVGs)")
    h.add_argument("--styles", nargs="+", default=["noto", "twemoji", "fluent-flat"],
                   help="styles to include: noto twemoji fluent-flat")
    h.add_argument("--cache", help="package cache (default $ATELIER_DATA_DIR or ~/.cache/atelier)")
    h.add_argument("--out", help="output folder (default <cache>/datasets)")
    h.add_argument("--limit", type=int, help="keep the first N emoji per style (quick tests)")
    h.set_defaults(func=_hires)
    f = sub.add_parser("folder", help="a folder of images with optional same-named .txt captions")
    f.add_argument("path")
    f.add_argument("--size", type=int, default=32)
    f.add_argument("--style", help="style name (default: the folder's name)")
    f.add_argument("--out", help="output folder (default <cache>/datasets)")
    f.set_defaults(func=_folder)
