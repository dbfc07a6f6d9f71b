"""Training curves drawn with Pillow alone, for machines without matplotlib (a rented GPU box):
one panel per metric, raw values faint and an exponential moving average on top, log y axis."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def _panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], steps: np.ndarray, values: np.ndarray,
           name: str, colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    keep = np.isfinite(values) & (values > 0)
    steps, values = steps[keep], values[keep]
    if values.size == 0:
        draw.text((x0 + 6, y0 + 4), f"{name}: no positive values", fill=(0, 0, 0))
        return
    logv = np.log10(values)
    smooth = np.empty_like(logv)
    acc = logv[0]
    for i, v in enumerate(logv):
        acc = 0.95 * acc + 0.05 * v
        smooth[i] = acc
    lo, hi = float(logv.min()), float(logv.max())
    hi = hi if hi > lo else lo + 1e-3
    s_lo, s_hi = float(steps.min()), float(max(steps.max(), steps.min() + 1))

    def xy(s: float, v: float) -> tuple[float, float]:
        return (x0 + 40 + (x1 - x0 - 50) * (s - s_lo) / (s_hi - s_lo),
                y1 - 20 - (y1 - y0 - 40) * (v - lo) / (hi - lo))

    faint = tuple(int(c + (255 - c) * 0.7) for c in colour)
    draw.line([xy(s, v) for s, v in zip(steps, logv, strict=True)], fill=faint, width=1)
    draw.line([xy(s, v) for s, v in zip(steps, smooth, strict=True)], fill=colour, width=2)
    draw.text((x0 + 6, y0 + 4), f"{name} (log10; last {values[-1]:.4g})", fill=(0, 0, 0))
    draw.text((x0 + 2, y0 + 18), f"{10 ** hi:.3g}", fill=(80, 80, 80))
    draw.text((x0 + 2, y1 - 32), f"{10 ** lo:.3g}", fill=(80, 80, 80))
    draw.text((x0 + 40, y1 - 14), f"step {int(s_lo)}", fill=(80, 80, 80))
    draw.text((x1 - 90, y1 - 14), f"step {int(s_hi)}", fill=(80, 80, 80))


def plot_metrics(records: list[dict], out: Path, keys: list[str], title: str = "") -> Path:
    """``records``: metrics.jsonl rows ({"step": ..., key: value}); the last record of a step wins
    (a resumed run logs the steps after its checkpoint again)."""
    recs = sorted({r["step"]: r for r in records}.values(), key=lambda r: r["step"])
    w, h = 420, 260
    cols = max(1, len(keys))
    img = Image.new("RGB", (w * cols, h + 24), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((8, 6), title, fill=(0, 0, 0))
    for j, key in enumerate(keys):
        pts = [(r["step"], r[key]) for r in recs if key in r and r[key] is not None and math.isfinite(r[key])]
        s = np.array([p[0] for p in pts], dtype=np.float64)
        v = np.array([p[1] for p in pts], dtype=np.float64)
        _panel(draw, (j * w + 4, 24, (j + 1) * w - 4, h + 20), s, v, key, _COLOURS[j % len(_COLOURS)])
    img.save(out)
    return Path(out)
