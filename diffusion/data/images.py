"""Pixel helpers: premultiplied-alpha resizing and contact sheets.

Resizing straight (non-premultiplied) RGBA bleeds the colour of fully transparent pixels
(often black or garbage) into the edges of the sprite. Filtering in premultiplied space
(Porter & Duff 1984) gives transparent pixels no weight, so we resize and store
premultiplied RGBA: a transparent pixel is exactly (0, 0, 0, 0).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_premultiplied(image: Image.Image, size: int) -> np.ndarray:
    """Any PIL image -> premultiplied RGBA uint8 array [size, size, 4], letterboxed square."""
    rgba = image.convert("RGBA")
    w, h = rgba.size
    if w != h:  # centre on a transparent square so the aspect ratio is kept
        side = max(w, h)
        canvas = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        canvas.paste(rgba, ((side - w) // 2, (side - h) // 2))
        rgba = canvas
    pm = rgba.convert("RGBa")
    if pm.size != (size, size):
        pm = pm.resize((size, size), Image.Resampling.LANCZOS if size >= w else Image.Resampling.BOX)
    arr = np.asarray(pm, dtype=np.uint8).copy()
    # PIL stores 'RGBa' premultiplied already; guard against rounding leaving colour over alpha.
    arr[..., :3] = np.minimum(arr[..., :3], arr[..., 3:4])
    return arr


def unpremultiply(arr: np.ndarray) -> np.ndarray:
    """Premultiplied RGBA uint8 [..., 4] -> straight RGBA uint8 (for PNG files)."""
    a = arr[..., 3:4].astype(np.float32)
    rgb = np.where(a > 0, arr[..., :3].astype(np.float32) * 255.0 / np.maximum(a, 1.0), 0.0)
    return np.concatenate([np.clip(np.rint(rgb), 0, 255), a], axis=-1).astype(np.uint8)


def over_background(arr: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Composite premultiplied RGBA over an opaque colour: C = C_pm + (1 - a) * B."""
    a = arr[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32)
    out = arr[..., :3].astype(np.float32) + (1.0 - a) * bg
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, cols: int, pad: int = 2, background: tuple[int, int, int] = (255, 255, 255),
         scale: int = 1) -> Image.Image:
    """Premultiplied RGBA uint8 [N, H, W, 4] -> an RGB contact sheet on ``background``."""
    n, h, w, _ = images.shape
    rows = max(1, -(-n // cols))
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), background, dtype=np.uint8)
    flat = over_background(images, background)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y:y + h, x:x + w] = flat[i]
    img = Image.fromarray(sheet)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return img
