"""Run logging: metrics.jsonl (the source of the curves PNG) and TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


class RunLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        rec = {"step": step, "time": time.time(), **{k: float(v) for k, v in values.items()}}
        self.metrics.write(json.dumps(rec) + "\n")
        self.metrics.flush()
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def image(self, step: int, tag: str, rgb: np.ndarray) -> None:
        if self.tb:
            self.tb.add_image(tag, rgb, step, dataformats="HWC")
            self.tb.flush()

    def close(self) -> None:
        self.metrics.close()
        if self.tb:
            self.tb.close()


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(run_dirs: dict[str, Path], out: Path, keys: dict[str, list[str]]) -> Path:
    """One panel per run: the listed metrics against step, raw and smoothed (EMA 0.98)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(run_dirs), figsize=(6 * len(run_dirs), 4), squeeze=False)
    for ax, (name, d) in zip(axes[0], run_dirs.items(), strict=True):
        # A resumed run logs the steps after its checkpoint again: the last record of a step wins.
        recs = sorted({r["step"]: r for r in read_metrics(Path(d) / "metrics.jsonl")}.values(),
                      key=lambda r: r["step"])
        for i, key in enumerate(keys.get(name, [])):
            pts = [(r["step"], r[key]) for r in recs if key in r]
            if not pts:
                continue
            s, v = np.array(pts).T
            smooth, acc = [], v[0]
            for x in v:
                acc = 0.95 * acc + 0.05 * x
                smooth.append(acc)
            colour = f"C{i}"
            ax.plot(s, v, color=colour, alpha=0.2)
            ax.plot(s, smooth, color=colour, label=f"{key} (smoothed)")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
