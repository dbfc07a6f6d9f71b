"""The 128² RGBA emoji set for the x4 upscaler (docs/MODEL.md, "The upscaler"), from the same
three styles as the base model's 32² data, each at its source's own high resolution:

  noto         Noto Color Emoji's colour bitmaps (136x128 PNGs in the font's CBDT table), from the
               Debian package fonts-noto-color-emoji (`apt-get download`), read with fontTools;
  twemoji      Twemoji SVGs from npm `@twemoji/svg`, rasterised at 128 with cairosvg;
  fluent-flat  Fluent flat SVGs (npm `fluentui-emoji`), rasterised at 128 as sources.py does.

Subjects, captions and categories come from emoji.json (sources.METADATA_PACKAGE), and the split
is dataset.split_of, so a subject held out of the base model is held out here as well.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from diffusion.data import sources
from diffusion.data.sources import Item, Source

HIRES_SIZE = 128

HIRES_SOURCES: dict[str, Source] = {
    "noto": Source("noto", "fonts-noto-color-emoji", "2.042", "OFL-1.1",
                   "Noto Color Emoji, Google (github.com/googlefonts/noto-emoji); the font is SIL OFL 1.1, "
                   "its images Apache-2.0", "noto-font", "CBDT", registry="deb"),
    "twemoji": Source("twemoji", "@twemoji/svg", "15.0.0", "CC-BY-4.0",
                      "Twemoji, Twitter/X Corp and contributors (github.com/jdecked/twemoji)", "twemoji-svg", "."),
    "fluent-flat": sources.SOURCES["fluent-flat"],
}


def fetch_deb(package: str, cache: Path) -> Path:
    """The extracted tree of a Debian package (`apt-get download` + `dpkg-deb -x`), fetched once."""
    root = cache / package
    if root.is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True, capture_output=True)
        debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"apt-get download {package} left no .deb in {cache}")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True, capture_output=True)
    return root


def _codepoints(unified: str) -> list[int]:
    return [int(c, 16) for c in unified.split("-")]


class NotoFont:
    """Code point sequence -> the 136x128 PNG bitmap Noto Color Emoji draws for it.

    Single code points resolve through the cmap; sequences (flags, keycaps, ZWJ sequences)
    through the GSUB ligatures that the font's shaper would apply."""

    def __init__(self, ttf: Path):
        from fontTools.ttLib import TTFont

        font = TTFont(str(ttf))
        self.cmap = font.getBestCmap()
        self.strike = font["CBDT"].strikeData[0]
        self.ligatures: dict[tuple[str, ...], str] = {}
        for lookup in font["GSUB"].table.LookupList.Lookup:
            for sub in lookup.SubTable:
                if sub.LookupType == 7:        # extension lookups wrap the real subtable
                    sub = sub.ExtSubTable
                if getattr(sub, "LookupType", None) != 4:
                    continue
                for first, ligs in sub.ligatures.items():
                    for lig in ligs:
                        self.ligatures.setdefault((first, *lig.Component), lig.LigGlyph)

    def glyph(self, unified: str) -> str | None:
        cps = _codepoints(unified)
        for seq in (cps, [c for c in cps if c != 0xFE0F]):
            names = [self.cmap.get(c) for c in seq]
            if any(n is None for n in names):
                continue
            name = names[0] if len(names) == 1 else self.ligatures.get(tuple(names))
            if name is not None and name in self.strike:
                return name
        return None

    def image(self, name: str) -> Image.Image:
        with Image.open(io.BytesIO(self.strike[name].imageData)) as im:
            return im.convert("RGBA")


def _base_entries(metadata: list[dict]) -> Iterator[dict]:
    for entry in metadata:
        if entry.get("category") != "Component":
            yield entry


def noto_items(deb_root: Path, metadata: list[dict]) -> Iterator[Item]:
    ttfs = sorted(deb_root.rglob("NotoColorEmoji.ttf"))
    if not ttfs:
        raise FileNotFoundError(f"no NotoColorEmoji.ttf under {deb_root}")
    font = NotoFont(ttfs[0])
    for entry in _base_entries(metadata):
        name = font.glyph(entry["unified"])
        if name is not None:
            yield Item(entry["unified"].lower(), sources.caption_of(entry), entry["category"],
                       lambda name=name: font.image(name))


def _svg_loader(path: Path, size: int):
    def load() -> Image.Image:
        import cairosvg  # only the SVG sets need a rasteriser

        png = cairosvg.svg2png(url=str(path), output_width=size, output_height=size)
        return Image.open(io.BytesIO(png)).convert("RGBA")
    return load


def twemoji_items(package_dir: Path, metadata: list[dict], size: int = HIRES_SIZE) -> Iterator[Item]:
    """Twemoji names files by the lower-case sequence, without FE0F except inside ZWJ sequences."""
    svg_dir = package_dir if any(package_dir.glob("*.svg")) else package_dir / "svg"
    for entry in _base_entries(metadata):
        uni = entry["unified"].lower()
        for name in (uni, uni.replace("-fe0f", "")):
            path = svg_dir / f"{name}.svg"
            if path.exists():
                yield Item(uni, sources.caption_of(entry), entry["category"], _svg_loader(path, size))
                break


def hires_items(style: str, cache: Path, metadata: list[dict]) -> Iterator[Item]:
    src = HIRES_SOURCES[style]
    npm_cache = cache / "npm"
    if src.kind == "noto-font":
        return noto_items(fetch_deb(src.package, cache / "deb"), metadata)
    if src.kind == "twemoji-svg":
        return twemoji_items(sources.fetch_package(src.package, src.version, npm_cache), metadata)
    if src.kind == "fluent":
        return sources.fluent_items(sources.fetch_package(src.package, src.version, npm_cache), src.subdir,
                                    metadata, raster=HIRES_SIZE)
    raise ValueError(f"unknown high-resolution source kind {src.kind!r}")


def _noto_square(image: Image.Image) -> Image.Image:
    """Noto's bitmaps are 136x128 with 4 transparent columns each side: crop them rather than
    resample (resampling 136 -> 128 would soften every edge); letterbox if a glyph uses them."""
    w, h = image.size
    if w > h:
        left = (w - h) // 2
        alpha = image.getchannel("A")
        if alpha.crop((0, 0, left, h)).getbbox() is None and alpha.crop((left + h, 0, w, h)).getbbox() is None:
            return image.crop((left, 0, left + h, h))
    return image


def build_hires(cache: Path, styles=tuple(HIRES_SOURCES), validation_fraction: float = 0.05,
                limit: int | None = None, progress=None):
    """Every style's emoji at 128x128 premultiplied RGBA, as an ImageDataset (dataset.py)."""
    from diffusion.data.build import _assemble
    from diffusion.data.images import to_premultiplied

    styles = list(styles)
    metadata = sources.load_metadata(sources.fetch_package(*sources.METADATA_PACKAGE, cache / "npm"))
    rows = []
    for style in styles:
        items = list(hires_items(style, cache, metadata))
        if limit is not None:
            items = items[:limit]
        for item in (progress(items, desc=style) if progress else items):
            image = item.load()
            if style == "noto":
                image = _noto_square(image)
            rows.append((item.emoji_id, item.caption, style, item.category, to_premultiplied(image, HIRES_SIZE)))
    if not rows:
        raise ValueError(f"no images for styles {styles}")
    return _assemble(rows, styles, validation_fraction)
