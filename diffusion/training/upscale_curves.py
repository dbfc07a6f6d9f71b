"""Training curves of the two upscalers from their `metrics.jsonl`, a continued run drawn after
the run it started from.

A run continued from an earlier run's weights (`--init-weights`, docs/MODEL.md "The upscaler")
counts its steps from 0 again; its records are shifted by the earlier run's last step, so one
axis shows the whole training of the shipped weights, with a dashed line where the second run
began (fresh optimiser, its own warm-up and cosine).

    python -m diffusion.training.upscale_curves --diffusion RUN1/metrics.jsonl RUN2/metrics.jsonl \\
        --cnn CNN/metrics.jsonl --out training_curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from diffusion.training.logger import read_metrics


def chained(paths: list[Path]) -> tuple[list[dict], list[int]]:
    """The runs' records on one step axis (each run after the previous one's last step) and the
    steps where the second and later runs begin."""
    out, starts, offset = [], [], 0
    for i, path in enumerate(paths):
        merged: dict[int, dict] = {}
        for r in read_metrics(Path(path)):   # a step's loss and validation records are separate lines
            merged.setdefault(r["step"], {}).update(r)
        recs = [merged[k] for k in sorted(merged)]
        if not recs:
            raise ValueError(f"{path}: no metrics records")
        if i > 0:
            starts.append(offset)
        out += [{**r, "step": r["step"] + offset} for r in recs]
        offset += recs[-1]["step"]
    return out, starts


def _series(recs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in recs if r.get(key) is not None]
    return (np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)) if pts else (np.zeros(0),) * 2


def _smooth(v: np.ndarray, keep: float = 0.95) -> np.ndarray:
    out, acc = np.empty_like(v), v[0] if len(v) else 0.0
    for i, x in enumerate(v):
        acc = keep * acc + (1 - keep) * x
        out[i] = acc
    return out


def plot(diffusion: list[Path], cnn: list[Path] | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {"diffusion": chained(diffusion)}
    if cnn:
        runs["cnn"] = chained(cnn)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2))
    for name, (recs, starts) in runs.items():
        colour = "C0" if name == "diffusion" else "C1"
        s, v = _series(recs, "loss")
        ax = axes[0] if name == "diffusion" else axes[1]
        ax.plot(s, v, color=colour, alpha=0.2)
        ax.plot(s, _smooth(v), color=colour, label=f"{name} loss (smoothed)")
        s, v = _series(recs, "lr")
        axes[2].plot(s, v, color=colour, label=f"{name} learning rate")
        for start in starts:
            for a in (ax, axes[2]):
                a.axvline(start, color=colour, linestyle="--", linewidth=0.8)
    axes[0].set_title("diffusion: EDM-weighted loss on the residual")
    axes[1].set_title("CNN: L1 on the residual")
    axes[2].set_title("learning rate")
    for a in axes:
        a.set_xlabel("step")
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)

    # Held-out PSNR: its own figure below the losses, one axis for every method.
    fig, ax = plt.subplots(1, 1, figsize=(17, 3.8))
    for name, (recs, starts) in runs.items():
        for start in starts:
            ax.axvline(start, color="C0" if name == "diffusion" else "C1", linestyle="--", linewidth=0.8)
        for key, label, style in (("val_psnr_model", f"{name} (4 Euler steps)" if name == "diffusion" else name, "-"),
                                  ("val_psnr_model_1step", f"{name} (1 step)", ":")):
            s, v = _series(recs, key)
            if len(s):
                ax.plot(s, v, style, marker="o", markersize=3, color="C0" if name == "diffusion" else "C1",
                        label=label)
    s, v = _series(runs["diffusion"][0], "val_psnr_bicubic")
    ax.plot(s, v, "--", color="grey", label="bicubic")
    ax.set_title("held-out PSNR (dB, premultiplied RGBA), validation images of the 128² set")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    lower = out.with_name(out.stem + ".psnr.png")
    fig.savefig(lower, dpi=90)
    plt.close(fig)
    _stack(out, lower)
    return out


def _stack(top: Path, bottom: Path) -> None:
    from PIL import Image

    a, b = Image.open(top).convert("RGB"), Image.open(bottom).convert("RGB")
    sheet = Image.new("RGB", (max(a.width, b.width), a.height + b.height), (255, 255, 255))
    sheet.paste(a, (0, 0))
    sheet.paste(b, (0, a.height))
    sheet.save(top)
    bottom.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--diffusion", nargs="+", required=True, type=Path,
                   help="the diffusion runs' metrics.jsonl, first run first")
    p.add_argument("--cnn", nargs="*", type=Path, help="the CNN runs' metrics.jsonl, first run first")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    print(plot(args.diffusion, args.cnn, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
