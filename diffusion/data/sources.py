"""Emoji image sets from public registry packages, one art style each.

Each source yields ``Item``s (subject id, caption words, category, a loader for the image).
Packages are fetched with the ordinary npm client (``npm pack``) into a cache outside git
and extracted with tarfile's safe ``data`` filter.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class Source:
    style: str           # the style name the model learns
    package: str         # npm package
    version: str
    licence: str         # licence of the artwork (not of the package's code)
    attribution: str
    kind: str            # "emoji-datasource" or "fluent"
    subdir: str          # image set inside the package
    registry: str = "npm"  # where the package comes from: "npm" or "deb" (Debian, `apt-get download`)


# Three visually distinct, permissively licensed styles (no share-alike / GPL artwork).
SOURCES: dict[str, Source] = {
    "noto": Source("noto", "emoji-datasource-google", "16.0.0", "Apache-2.0",
                   "Noto Emoji, Google (github.com/googlefonts/noto-emoji)", "emoji-datasource", "google"),
    "twemoji": Source("twemoji", "emoji-datasource-twitter", "16.0.0", "CC-BY-4.0",
                      "Twemoji, Twitter/X Corp and contributors (github.com/jdecked/twemoji)",
                      "emoji-datasource", "twitter"),
    "fluent-flat": Source("fluent-flat", "fluentui-emoji", "1.3.0", "MIT",
                          "Fluent Emoji (flat), Microsoft (github.com/microsoft/fluentui-emoji)", "fluent", "flat"),
    "fluent-color": Source("fluent-color", "fluentui-emoji", "1.3.0", "MIT",
                           "Fluent Emoji (color), Microsoft (github.com/microsoft/fluentui-emoji)", "fluent",
                           "modern"),
}
DEFAULT_STYLES = ("noto", "twemoji", "fluent-flat")
# emoji.json (names, short names, categories) comes with every emoji-datasource package.
METADATA_PACKAGE = ("emoji-datasource-google", "16.0.0")


@dataclass(frozen=True)
class Item:
    emoji_id: str        # unified code point sequence, shared across styles
    caption: str
    category: str
    load: Callable[[], Image.Image]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def fetch_package(package: str, version: str, cache: Path) -> Path:
    """Return the extracted ``package/`` directory of an npm package, downloading it once.
    A scoped name (@scope/name) is packed by npm as scope-name-VERSION.tgz."""
    flat = package.lstrip("@").replace("/", "-")
    root = cache / f"{flat}-{version}"
    if (root / "package").is_dir():
        return root / "package"
    cache.mkdir(parents=True, exist_ok=True)
    tgz = cache / f"{flat}-{version}.tgz"
    if not tgz.exists():
        subprocess.run(["npm", "pack", f"{package}@{version}", "--pack-destination", str(cache)],
                       check=True, capture_output=True)
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tar:
        tar.extractall(root, filter="data")
    return root / "package"


def caption_of(entry: dict) -> str:
    """'grinning face' plus the short names that add words: 'grinning face, grinning'."""
    name = (entry.get("name") or entry.get("short_name") or "").lower()
    words = [name]
    for short in entry.get("short_names") or []:
        s = short.replace("_", " ").replace("-", " ").lower()
        if re.fullmatch(r"[a-z ]+\d", s) and s[:-1] in words:  # "cat2" (disambiguation), not a new word
            continue
        if s and s not in words and s != name:
            words.append(s)
    return ", ".join(w for w in words if w)


def load_metadata(package_dir: Path) -> list[dict]:
    return json.loads((package_dir / "emoji.json").read_text(encoding="utf-8"))


def _open_png(path: Path) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        with Image.open(path) as im:
            return im.convert("RGBA")
    return load


def _open_svg(path: Path, size: int) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        import cairosvg  # only the fluent sets need an SVG rasteriser

        png = cairosvg.svg2png(url=str(path), output_width=size, output_height=size)
        return Image.open(io.BytesIO(png)).convert("RGBA")
    return load


def emoji_datasource_items(package_dir: Path, subdir: str, metadata: list[dict]) -> Iterator[Item]:
    """Base emoji (no skin-tone variants) that the set has an image for."""
    img_dir = package_dir / "img" / subdir / "64"
    for entry in metadata:
        if not entry.get(f"has_img_{subdir}", True) or entry.get("category") == "Component":
            continue
        path = img_dir / entry["image"]
        if path.exists():
            yield Item(entry["unified"].lower(), caption_of(entry), entry["category"], _open_png(path))


_TONES = ("-light", "-medium-light", "-medium", "-medium-dark", "-dark")


def fluent_items(package_dir: Path, subdir: str, metadata: list[dict], raster: int = 128) -> Iterator[Item]:
    """Fluent icons are named by CLDR slug; match them to emoji.json by slugged name or short name.
    Skin-tone variants are dropped and '-default' is the base emoji."""
    # Names first: Fluent's "cat" is U+1F408 CAT, although "cat" is also a short name of CAT FACE.
    by_name = {slug(e.get("name") or ""): e for e in metadata}
    by_short: dict[str, dict] = {}
    for entry in metadata:
        for key in entry.get("short_names") or []:
            by_short.setdefault(slug(key), entry)
    icon_dir = package_dir / "icons" / subdir
    names = sorted(p.stem for p in icon_dir.glob("*.svg"))
    present = set(names)
    seen: set[str] = set()
    for name in names:
        base = name
        if name.endswith("-default"):
            base = name[: -len("-default")]
        elif any(name.endswith(t) and name[: -len(t)] + "-default" in present for t in _TONES):
            continue
        entry = by_name.get(base) or by_short.get(base)
        if entry is None or entry.get("category") == "Component" or entry["unified"] in seen:
            continue
        seen.add(entry["unified"])
        yield Item(entry["unified"].lower(), caption_of(entry), entry["category"],
                   _open_svg(icon_dir / f"{name}.svg", raster))


def items_for(source: Source, package_dir: Path, metadata: list[dict]) -> Iterator[Item]:
    if source.kind == "emoji-datasource":
        return emoji_datasource_items(package_dir, source.subdir, metadata)
    if source.kind == "fluent":
        return fluent_items(package_dir, source.subdir, metadata)
    raise ValueError(f"unknown source kind {source.kind!r}")
