"""Contact sheets of two models one above the other, each under its title:
`python -m diffusion.evaluation.beside A.png B.png --titles "teacher" "fast" --out C.png`.

Sheets made with the same prompts, styles and seeds (diffusion/evaluation/contact_sheet.py) line
up cell for cell, so a distilled model's sheet under its teacher's compares image by image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from diffusion.evaluation.contact_sheet import _font

TITLE_HEIGHT = 28


def stacked(sheets: list[Image.Image], titles: list[str], background=(255, 255, 255)) -> Image.Image:
    if len(sheets) != len(titles) or not sheets:
        raise ValueError(f"{len(sheets)} sheets for {len(titles)} titles")
    width = max(s.width for s in sheets)
    out = Image.new("RGB", (width, sum(TITLE_HEIGHT + s.height for s in sheets)), background)
    draw, font, y = ImageDraw.Draw(out), _font(16), 0
    for sheet, title in zip(sheets, titles, strict=True):
        draw.rectangle((0, y, width, y + TITLE_HEIGHT - 2), fill=(235, 235, 235))
        draw.text((6, y + 5), title, fill=(0, 0, 0), font=font)
        out.paste(sheet.convert("RGB"), (0, y + TITLE_HEIGHT))
        y += TITLE_HEIGHT + sheet.height
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sheets", nargs="+", type=Path)
    p.add_argument("--titles", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    stacked([Image.open(s) for s in a.sheets], a.titles).save(a.out, optimize=True)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
