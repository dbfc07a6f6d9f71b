"""Training the output concept classifier (docs/MODEL.md, "Concept classifier") and measuring it.

Labels come from the emoji metadata (diffusion/data/concept_labels.py). A concept has a few
subjects (eight weapons, one cigarette), each in three styles, so the measurement is by subject:

1. Cross-validation over the base model's train subjects in ``FOLDS`` folds (whole subjects):
   a network trained without fold k scores fold k, so every image has an out-of-fold score.
2. Thresholds: per concept, the lowest at which at most ``max_false_flags`` (0.2 %) of the
   negatives' out-of-fold scores (the validation) are flagged: a tenant that blocks a concept
   loses few benign images to it, and recall is what that budget allows.
3. Held-out precision and recall: fold k's images judged at the thresholds chosen on the other
   folds' out-of-fold scores only, so no image helps choose the threshold it is judged at.
4. The shipped network trains on every train subject; the base model's validation subjects
   (the test fold, none of which shows a concept) measure its false flags on unseen subjects.

Training: masked binary cross-entropy (unsure labels add nothing), positives drawn
``positive_share`` of the time, AdamW with a one-cycle learning rate, augmentations a generated
image may differ by (flips, shifts, scale, blur, colour, noise). Seeded.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffusion.data.concept_labels import CONCEPTS, FOLDS, RULES, TEST_FOLD
from diffusion.nets.concept_net import ConceptNet, ConceptNetConfig

MIN_THRESHOLD = 1e-6  # thresholds stay strictly inside (0, 1), as the manifest requires


@dataclass
class ConceptTrainOptions:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    positive_share: float = 0.3   # of each batch, drawn from images showing some concept
    seed: int = 0
    # Each concept's share of benign images it may flag (on held-out scores): five concepts at 0.2 %
    # keep a tenant that blocks them all under 1 % of its benign images dropped.
    max_false_flags: float = 0.002


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 premultiplied RGBA [B,H,W,4] -> [B,4,H,W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    x = torch.where((u(b) < 0.5)[:, None, None, None], x.flip(-1), x)
    # Scale 0.75..1.1 and shift up to 3 px; outside the image is transparent (-1).
    scale = 0.75 + 0.35 * u(b)
    shift = (u(b, 2) - 0.5) * (6.0 / 16.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0
    # A decoder's softness: a 3x3 blur of random strength on half the images.
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16.0).expand(4, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=4)
    amount = (u(b) * (u(b) < 0.5))[:, None, None, None]
    x = x + amount * (blurred - x)
    # Colour: per-channel gain on premultiplied RGB, kept at or under alpha; a little noise.
    alpha = x[:, 3:4]
    rgb = ((x[:, :3] + 1.0) * (0.8 + 0.4 * u(b, 3, 1, 1)) - 1.0)
    rgb = torch.minimum(rgb, alpha)
    x = torch.cat([rgb, alpha], dim=1) + 0.03 * torch.randn(x.shape, generator=gen)
    return x.clamp(-1.0, 1.0)


def fit(images: np.ndarray, labels: np.ndarray, cfg: ConceptNetConfig, opts: ConceptTrainOptions) -> ConceptNet:
    """A network trained on ``images`` (uint8 premultiplied) with ``labels`` (1, 0, -1 unsure)."""
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    model = ConceptNet(cfg)
    x_all = to_input(images)
    y = torch.from_numpy(labels.astype(np.float32))
    known = y >= 0
    positive = (labels == 1).any(axis=1)
    weights = np.where(positive, opts.positive_share / max(1, positive.sum()),
                       (1 - opts.positive_share) / max(1, (~positive).sum()))
    weights = torch.from_numpy(weights)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=opts.lr, total_steps=opts.steps)
    model.train()
    for _ in range(opts.steps):
        idx = torch.multinomial(weights, opts.batch_size, replacement=True, generator=gen)
        logits = model(_augment(x_all[idx], gen))
        loss = F.binary_cross_entropy_with_logits(logits, y[idx].clamp(min=0), weight=known[idx].float(),
                                                  reduction="sum") / known[idx].sum().clamp(min=1)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def scores(model: ConceptNet, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Sigmoid probabilities [N, concepts]."""
    out = [torch.sigmoid(model(to_input(images[i:i + batch]))).numpy() for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, len(model.config.concepts)), np.float32)


def threshold_for(score: np.ndarray, label: np.ndarray, max_false_flags: float) -> float:
    """The lowest threshold at which at most ``max_false_flags`` of the known negatives score at or
    over it: the most recall that false-flag budget allows (unsure rows left out)."""
    negatives = np.sort(score[label == 0])[::-1]
    allowed = int(np.floor(max_false_flags * len(negatives)))
    if allowed >= len(negatives):
        return MIN_THRESHOLD
    # Just over the (allowed + 1)-th highest negative: exactly `allowed` negatives stay at or over it.
    return float(np.clip(np.nextafter(negatives[allowed], np.inf), MIN_THRESHOLD, 1.0 - MIN_THRESHOLD))


def counts(score: np.ndarray, label: np.ndarray, threshold: float) -> dict[str, int]:
    keep = label >= 0
    flagged, y = score[keep] >= threshold, label[keep] == 1
    return {"tp": int((flagged & y).sum()), "fp": int((flagged & ~y).sum()), "fn": int((~flagged & y).sum()),
            "tn": int((~flagged & ~y).sum())}


def average_precision(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the precision-recall curve, threshold-free (the mean precision at each positive)."""
    keep = label >= 0
    s, y = score[keep], label[keep] == 1
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="stable")
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def evaluate(images: np.ndarray, labels: np.ndarray, folds: np.ndarray, emoji_ids: np.ndarray,
             cfg: ConceptNetConfig, opts: ConceptTrainOptions, log=print) -> tuple[ConceptNet, dict]:
    """Cross-validate, choose thresholds, train the shipped network; returns it and the report."""
    start = time.perf_counter()
    trainable = folds != TEST_FOLD
    oof = np.full(labels.shape, np.nan, dtype=np.float64)
    for k in range(FOLDS):
        inside = trainable & (folds != k)
        model = fit(images[inside], labels[inside], cfg, opts)
        oof[folds == k] = scores(model, images[folds == k])
        log(f"fold {k}: trained on {int(inside.sum())} images, scored {int((folds == k).sum())}")
    budget = opts.max_false_flags
    thresholds = {c: threshold_for(oof[trainable, j], labels[trainable, j], budget)
                  for j, c in enumerate(cfg.concepts)}
    # Held-out figures: each fold judged at thresholds chosen without it.
    nested = {c: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for c in cfg.concepts}
    for k in range(FOLDS):
        others, here = trainable & (folds != k), folds == k
        for j, c in enumerate(cfg.concepts):
            t = threshold_for(oof[others, j], labels[others, j], budget)
            for key, v in counts(oof[here, j], labels[here, j], t).items():
                nested[c][key] += v
    final = fit(images[trainable], labels[trainable], cfg, opts)
    test = folds == TEST_FOLD
    test_scores = scores(final, images[test])
    per_concept = {}
    for j, c in enumerate(cfg.concepts):
        n = nested[c]
        positives = labels[trainable, j] == 1
        per_concept[c] = {
            "threshold": thresholds[c],
            "positive_subjects": sorted({str(e) for e in emoji_ids[trainable][positives]}),
            "positive_images": int(positives.sum()),
            "unsure_images": int((labels[:, j] == -1).sum()),
            "held_out": {**n, "precision": _ratio(n["tp"], n["tp"] + n["fp"]),
                         "recall": _ratio(n["tp"], n["tp"] + n["fn"])},
            "average_precision": round(average_precision(oof[trainable, j], labels[trainable, j]), 4),
            "test": counts(test_scores[:, j], labels[test, j], thresholds[c]),
        }
    any_flag = (test_scores >= np.asarray([thresholds[c] for c in cfg.concepts])).any(axis=1)
    report = {
        "oof_scores": oof,  # popped by the caller into scores.npz beside the package
        "concepts": per_concept,
        "thresholds": thresholds,
        "rules": [asdict(r) for r in RULES if r.concept in cfg.concepts],
        "folds": FOLDS,
        "images": {"train_subjects_images": int(trainable.sum()), "test_images": int(test.sum())},
        "test_flagged_any": {"images": int(any_flag.sum()), "of": int(test.sum())},
        "options": asdict(opts),
        "network": cfg.to_dict(),
        "parameters": sum(p.numel() for p in final.parameters()),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return final, report


def report_markdown(report: dict) -> str:
    lines = ["# Concept classifier: evaluation", "",
             f"Held-out: {report['folds']}-fold cross-validation over whole subjects of the base model's train "
             "split; each fold's images judged at thresholds chosen on the other folds' out-of-fold scores "
             f"(the lowest flagging at most {report['options']['max_false_flags']:.1%} of their negatives). "
             "Test: the base model's validation subjects (no concept among them), scored by the shipped "
             "network at the shipped thresholds.", "",
             "| concept | subjects | images | threshold | held-out precision | held-out recall | TP | FP | FN "
             "| average precision | test false flags |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c, r in report["concepts"].items():
        h, t = r["held_out"], r["test"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {c} | {len(r['positive_subjects'])} | {r['positive_images']} | {r['threshold']:.4g} "
                     f"| {fmt(h['precision'])} | {fmt(h['recall'])} | {h['tp']} | {h['fp']} | {h['fn']} "
                     f"| {r['average_precision']:.2f} | {t['fp']} / {t['fp'] + t['tn']} |")
    flagged = report["test_flagged_any"]
    lines += ["", f"Test images flagged for any concept: {flagged['images']} of {flagged['of']}.", ""]
    return "\n".join(lines)


def write_package(out: Path, model: ConceptNet, report: dict, data_card: dict, licenses: list[dict],
                  command: str) -> Path:
    """A package `atelier export` turns into a concept-classifier version (docs/MODEL_REPOSITORY.md)."""
    from diffusion.nets.concept_net import save_concept_net

    out.mkdir(parents=True, exist_ok=True)
    save_concept_net(model, out)
    config = {
        "kind": "concept_classifier",
        "description": "Atelier output concept classifier for 32x32 emoji-style RGBA images",
        "network": model.config.to_dict(),
        "thresholds": report["thresholds"],
        "data_card": data_card,
        "licenses": licenses,
        "provenance": {"command": command, "options": report["options"], "seconds": report["seconds"]},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "EVAL.md").write_text(report_markdown(report), encoding="utf-8")
    return out


def concepts_config(concepts: tuple[str, ...] = CONCEPTS, **overrides) -> ConceptNetConfig:
    return ConceptNetConfig(concepts=tuple(concepts), **overrides)
