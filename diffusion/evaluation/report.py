"""The evaluation report: every figure for a set of images, measured against the train split.

Each set (the generated images, and the held-out real images that serve as the floor) is
compared with the same reference, the real train split, so the two columns differ only in
where the images came from. Sample-size bias matters: FID is biased upward at small N
(Chong & Forsyth 2020, "Effectively unbiased FID") and k-NN recall depends on the sizes of
both sets, so the floor set and the generated set have the same number of images (one
generated image per validation prompt, unless several seeds are asked for).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffusion import metrics
from diffusion.evaluation.embed import Embedding
from diffusion.metrics import adherence, chance_adherence


@dataclass(frozen=True)
class LabelledSet:
    """Images' embedding and the labels they were asked for (-1: no style prompted)."""
    embedding: Embedding
    categories: np.ndarray
    styles: np.ndarray


# (key, label, format, better) in the order the tables show them.
FIGURES = [
    ("fid", "FID (vs train)", "{:.2f}", "lower"),
    ("kid", "KID x1000 (vs train)", "{:.2f}", "lower"),
    ("precision", "precision", "{:.3f}", "higher"),
    ("recall", "recall", "{:.3f}", "higher"),
    ("is_category", "IS analogue, category", "{:.2f}", "higher"),
    ("is_style", "IS analogue, style", "{:.2f}", "higher"),
    ("category_adherence", "category adherence", "{:.3f}", "higher"),
    ("style_adherence", "style adherence", "{:.3f}", "higher"),
]


def set_figures(s: LabelledSet, reference: Embedding, *, kid_subsets: int = 100, k: int = 3,
                seed: int = 0) -> dict[str, float]:
    """FID, KID, precision/recall against ``reference``; IS analogues; adherence and chance."""
    e = s.embedding
    kid, kid_std = metrics.kernel_inception_distance(reference.features, e.features, subsets=kid_subsets, seed=seed)
    precision, recall = metrics.precision_recall(reference.features, e.features, k=k)
    # One split: p(y) over all N images. Salimans et al.'s 10 splits of 5,000 would leave a few
    # dozen images per split here, and the split mean is then dominated by the estimate of p(y).
    is_cat, _ = metrics.inception_score(e.category_probs, splits=1)
    is_sty, _ = metrics.inception_score(e.style_probs, splits=1)
    return {
        "images": len(e),
        "fid": metrics.frechet_distance(reference.features, e.features),
        "kid": 1000.0 * kid,
        "kid_std": 1000.0 * kid_std,
        "precision": precision,
        "recall": recall,
        "is_category": is_cat,
        "is_style": is_sty,
        "category_adherence": adherence(e.category_probs, s.categories),
        "category_chance": chance_adherence(e.category_probs, s.categories),
        "style_adherence": adherence(e.style_probs, s.styles),
        "style_chance": chance_adherence(e.style_probs, s.styles),
    }


def _cell(fmt: str, value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return fmt.format(value)


def markdown(report: dict, baselines: dict[str, dict] | None = None) -> str:
    """A summary table: generated (this run), optional baselines' generated, and the real floor."""
    baselines = baselines or {}
    gen, floor = report["sets"]["generated"], report["sets"]["real"]
    columns = [(f"generated ({report['model']['label']})", gen)]
    columns += [(f"generated ({label})", b["sets"]["generated"]) for label, b in baselines.items()]
    if "reconstructed" in report["sets"]:
        columns += [(f"real {report['generation']['split']} images through the VAE", report["sets"]["reconstructed"])]
    columns += [(f"real {report['generation']['split']} images (floor)", floor)]
    g = report["generation"]
    lines = [
        f"# Evaluation of {report['model']['label']}",
        "",
        f"Checkpoint `{report['model']['checkpoint']}`"
        + (f" (step {report['model']['step']})" if report["model"].get("step") is not None else "")
        + f"; {g['images']} images for the {g['prompts']} {g['split']} prompts (caption + style), "
        f"sampler `{g['sampler']}`, {g['steps']} steps, guidance {g['guidance']}, seeds from {g['seed']}. "
        f"Reference set: the {report['reference']['images']} real images of the train split. "
        f"Features and probabilities: the domain classifier `{report['classifier']['path']}` "
        f"(validation accuracy: category {report['classifier']['validation']['category']:.3f}, "
        f"style {report['classifier']['validation']['style']:.3f}).",
        "",
        "| figure | " + " | ".join(name for name, _ in columns) + " | better |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for key, label, fmt, better in FIGURES:
        lines.append(f"| {label} | " + " | ".join(_cell(fmt, col.get(key)) for _, col in columns) + f" | {better} |")
    lines.append("| category adherence at chance | "
                 + " | ".join(_cell("{:.3f}", col.get("category_chance")) for _, col in columns) + " | |")
    lines.append("| style adherence at chance | "
                 + " | ".join(_cell("{:.3f}", col.get("style_chance")) for _, col in columns) + " | |")
    lines += [
        "",
        "The floor is the same figure for the real images of the same prompts against the train split "
        "(for validation prompts: subjects neither the model nor the classifier saw): what a perfect "
        "generator would score at this sample size. "
        "Adherence is how often the classifier finds the prompted category or style; 'at chance' "
        "is the same predictions scored against shuffled labels."
        + (" Real images through the VAE (encoded, decoded) show how much of the gap to the floor the "
           "autoencoder alone accounts for." if "reconstructed" in report["sets"] else ""),
        "",
    ]
    if report.get("per_style"):
        lines += _per_style_table(report["per_style"])
    if report.get("command"):
        lines += ["Command:", "", "```", report["command"], "```", ""]
    return "\n".join(lines)


def _per_style_table(per_style: dict[str, dict]) -> list[str]:
    names = list(per_style)
    lines = ["Per prompted style (generated / real):", "",
             "| style | prompts | category adherence | style adherence | generated images seen as |",
             "|---|---|---|---|---|"]
    for name, row in per_style.items():
        seen = ", ".join(f"{n} {row.get('generated_seen_as', {}).get(n, float('nan')):.2f}" for n in names)
        lines.append(f"| {name} | {row['prompts']} | {row['generated_category']:.3f} / {row['real_category']:.3f} "
                     f"| {row['generated_style']:.3f} / {row['real_style']:.3f} | {seen} |")
    return lines + [""]


def write_report(report: dict, out: str | Path, baselines: dict[str, dict] | None = None) -> dict[str, Path]:
    """``eval.json`` and ``EVAL.md`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "eval.json", "markdown": out / "EVAL.md"}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(report, baselines), encoding="utf-8")
    return paths
