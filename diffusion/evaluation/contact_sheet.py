"""A labelled contact sheet: fixed prompts (rows) x styles x seeds (columns).

The same prompts, styles and seeds every time, so sheets of two checkpoints (or two
versions of the model) can be laid side by side and compared image by image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from diffusion.data.images import over_background

# Captions as the dataset writes them. The first eight are train-split subjects (can the model
# draw what it saw?), the last four are validation-split subjects it never saw.
DEFAULT_PROMPTS = (
    "grinning face, grinning",
    "cat face, cat",
    "red apple, apple",
    "rocket",
    "soccer ball, soccer",
    "fire",
    "ghost",
    "thumbs up sign, +1, thumbsup",
    "crab",
    "ferry",
    "lime",
    "indonesia flag, flag id",
)
DEFAULT_SEEDS = (0, 1)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(images: np.ndarray, prompts: list[str], styles: list[str], seeds: list[int],
                  scale: int = 3, pad: int = 4, label_width: int = 230,
                  background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """``images`` uint8 premultiplied RGBA [P, S, K, H, W, 4] (prompt, style, seed) -> RGB sheet.

    Images are shown over ``background`` and enlarged ``scale`` times without smoothing, so every
    generated pixel stays visible."""
    p, s, k, h, w, _ = images.shape
    if (p, s, k) != (len(prompts), len(styles), len(seeds)):
        raise ValueError(f"images {images.shape[:3]} do not match {len(prompts)} prompts, {len(styles)} styles, "
                         f"{len(seeds)} seeds")
    th, tw = h * scale, w * scale
    font = _font(13)
    header = 40
    group_gap = 3 * pad
    col_x = [label_width + si * (k * (tw + pad) + group_gap) + ki * (tw + pad) for si in range(s) for ki in range(k)]
    width = label_width + s * (k * (tw + pad) + group_gap)
    height = header + p * (th + pad) + pad
    sheet = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(sheet)
    flat = over_background(images.reshape(-1, h, w, 4), background).reshape(p, s, k, h, w, 3)
    for si, style in enumerate(styles):
        draw.text((col_x[si * k], 4), style, fill=(0, 0, 0), font=font)
        for ki, seed in enumerate(seeds):
            draw.text((col_x[si * k + ki], 22), f"seed {seed}", fill=(110, 110, 110), font=font)
    for pi, prompt in enumerate(prompts):
        y = header + pi * (th + pad)
        text = prompt if draw.textlength(prompt, font=font) <= label_width - 8 else prompt[:30] + "…"
        draw.text((4, y + th // 2 - 7), text, fill=(0, 0, 0), font=font)
        for si in range(s):
            for ki in range(k):
                tile = Image.fromarray(flat[pi, si, ki]).resize((tw, th), Image.Resampling.NEAREST)
                sheet.paste(tile, (col_x[si * k + ki], y))
    return sheet
