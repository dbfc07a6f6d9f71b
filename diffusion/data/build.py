"""Dataset builders: the multi-style emoji set, and a studio's folder of images."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from diffusion.data import sources
from diffusion.data.dataset import NO_STYLE, ImageDataset, save_dataset, split_of
from diffusion.data.images import grid, to_premultiplied

CATEGORIES = ["Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink", "Travel & Places",
              "Activities", "Objects", "Symbols", "Flags", "unknown"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


def default_cache() -> Path:
    return Path(os.environ.get("ATELIER_DATA_DIR", Path.home() / ".cache" / "atelier"))


def shown_path(path: str | Path) -> str:
    """A path as reports and cards record it: under the home folder as ~/..., so they name no machine's layout."""
    try:
        return "~/" + str(Path(path).resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def _assemble(rows: list[tuple[str, str, str, str, np.ndarray]], styles: list[str],
              validation_fraction: float) -> ImageDataset:
    """rows: (emoji_id, caption, style, category, image) -> dataset; style 0 is 'none'."""
    style_names = [NO_STYLE] + styles
    return ImageDataset(
        images=np.stack([r[4] for r in rows]).astype(np.uint8),
        captions=np.asarray([r[1] for r in rows], dtype=np.str_),
        emoji_ids=np.asarray([r[0] for r in rows], dtype=np.str_),
        style_ids=np.asarray([style_names.index(r[2]) for r in rows], dtype=np.int64),
        category_ids=np.asarray([CATEGORIES.index(r[3]) if r[3] in CATEGORIES else len(CATEGORIES) - 1
                                 for r in rows], dtype=np.int64),
        split=np.asarray([split_of(r[0], validation_fraction) for r in rows], dtype=np.uint8),
        styles=style_names,
        categories=list(CATEGORIES),
    )


def build_emoji(cache: Path, size: int = 32, styles: Iterable[str] = sources.DEFAULT_STYLES,
                validation_fraction: float = 0.05, limit: int | None = None,
                progress=None) -> ImageDataset:
    """Fetch (once) and render every style's emoji at ``size`` x ``size`` premultiplied RGBA.

    ``limit`` keeps the first N subjects per style (tests); ``progress`` wraps iterables (tqdm)."""
    styles = list(styles)
    npm_cache = cache / "npm"
    metadata = sources.load_metadata(sources.fetch_package(*sources.METADATA_PACKAGE, npm_cache))
    rows = []
    for style in styles:
        src = sources.SOURCES[style]
        items = list(sources.items_for(src, sources.fetch_package(src.package, src.version, npm_cache), metadata))
        if limit is not None:
            items = items[:limit]
        for item in (progress(items, desc=style) if progress else items):
            rows.append((item.emoji_id, item.caption, style, item.category, to_premultiplied(item.load(), size)))
    return _assemble(rows, styles, validation_fraction)


def build_folder(folder: Path, size: int = 32, style: str | None = None,
                 validation_fraction: float = 0.05) -> ImageDataset:
    """Images in ``folder`` (recursively); ``name.txt`` next to ``name.png`` is its caption,
    else the file name is. The style is ``style`` or the folder's name."""
    folder = Path(folder)
    style = style or folder.resolve().name
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        txt = path.with_suffix(".txt")
        caption = txt.read_text(encoding="utf-8").strip() if txt.exists() else path.stem.replace("_", " ")
        with Image.open(path) as im:
            image = to_premultiplied(im, size)
        rows.append((str(path.relative_to(folder)), caption, style, "unknown", image))
    if not rows:
        raise ValueError(f"no images found under {folder}")
    return _assemble(rows, [style], validation_fraction)


def data_card(ds: ImageDataset, style_sources: dict[str, sources.Source] | None = None) -> dict:
    counts = Counter((ds.styles[s], ds.categories[c]) for s, c in zip(ds.style_ids, ds.category_ids, strict=True))
    card = {
        "images": len(ds),
        "resolution": list(ds.images.shape[1:]),
        "pixel_format": "RGBA uint8, premultiplied alpha",
        "train": int((ds.split == 0).sum()),
        "validation": int((ds.split == 1).sum()),
        "styles": ds.styles,
        "categories": ds.categories,
        "per_style": {s: int((ds.style_ids == i).sum()) for i, s in enumerate(ds.styles) if i > 0},
        "per_category": {c: int((ds.category_ids == i).sum()) for i, c in enumerate(ds.categories)},
        "per_style_category": {f"{s} / {c}": n for (s, c), n in sorted(counts.items())},
        "split": "sha256(emoji id) < validation fraction -> validation; same subject, same split in every style",
    }
    if style_sources:
        card["sources"] = {s: {"package": f"{src.registry}:{src.package}@{src.version}", "licence": src.licence,
                               "attribution": src.attribution, "set": src.subdir}
                           for s, src in style_sources.items() if s in ds.styles}
    return card


def card_markdown(card: dict) -> str:
    lines = ["# Data card", "", f"{card['images']} images ({card['train']} train, {card['validation']} validation), "
             f"{card['resolution'][0]}x{card['resolution'][1]} {card['pixel_format']}.", "", "## Styles", "",
             "| style | images | source | licence | attribution |", "|---|---|---|---|---|"]
    for s, n in card["per_style"].items():
        src = card.get("sources", {}).get(s, {})
        lines.append(f"| {s} | {n} | {src.get('package', '-')} | {src.get('licence', '-')} "
                     f"| {src.get('attribution', '-')} |")
    lines += ["", "## Categories", "", "| category | images |", "|---|---|"]
    lines += [f"| {c} | {n} |" for c, n in card["per_category"].items() if n]
    lines += ["", f"Split: {card['split']}.", ""]
    return "\n".join(lines)


def contact_sheet(ds: ImageDataset, per_style: int = 16, scale: int = 2) -> Image.Image:
    """Rows = styles, columns = the same subjects in each style (where every style has them)."""
    styles = [i for i in range(1, len(ds.styles)) if (ds.style_ids == i).any()]
    common = set.intersection(*[set(ds.emoji_ids[ds.style_ids == i]) for i in styles]) if styles else set()
    chosen = sorted(common)[:: max(1, len(common) // per_style)][:per_style]
    tiles = []
    for i in styles:
        for e in chosen:
            tiles.append(ds.images[np.flatnonzero((ds.style_ids == i) & (ds.emoji_ids == e))[0]])
    if not tiles:
        tiles = list(ds.images[:per_style])
    return grid(np.stack(tiles), cols=max(1, len(chosen)), scale=scale)


def write_dataset(ds: ImageDataset, out: Path, name: str, style_sources=None) -> dict[str, Path]:
    """Write ``name.npz``, ``name.card.json``/``.md`` and ``name.contact.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    card = data_card(ds, style_sources)
    paths = {"npz": save_dataset(ds, out / f"{name}.npz"),
             "card_json": out / f"{name}.card.json", "card_md": out / f"{name}.card.md",
             "contact": out / f"{name}.contact.png"}
    paths["card_json"].write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    paths["card_md"].write_text(card_markdown(card), encoding="utf-8")
    contact_sheet(ds).save(paths["contact"])
    return paths
