"""One evaluation run: generate for held-out prompts, embed, measure against the train split.

The prompts are the rows of a dataset split (by default validation: subjects the model never
saw in any style), each a caption and a style; the real images of the same rows are the floor
set, so generated and real columns share prompts, labels and sample size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from diffusion.data.dataset import TRAIN, VALIDATION, ImageDataset
from diffusion.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER
from diffusion.evaluation.classifier import DomainClassifier
from diffusion.evaluation.contact_sheet import DEFAULT_PROMPTS, DEFAULT_SEEDS, contact_sheet
from diffusion.evaluation.embed import embed
from diffusion.evaluation.report import LabelledSet, set_figures
from diffusion.evaluation.train_classifier import labels
from diffusion.metrics import adherence
from diffusion.text_to_image import LatentModel, generate

SPLITS = {"train": TRAIN, "validation": VALIDATION}


def prompt_rows(ds: ImageDataset, split: str = "validation", limit: int | None = None) -> ImageDataset:
    """The rows whose captions and styles are the prompts; ``limit`` keeps an evenly spaced subset."""
    part = ds.subset(SPLITS[split])
    if limit is None or limit >= len(part):
        return part
    i = np.unique(np.linspace(0, len(part) - 1, limit).round().astype(int))
    return ImageDataset(part.images[i], part.captions[i], part.emoji_ids[i], part.style_ids[i],
                        part.category_ids[i], part.split[i], list(part.styles), list(part.categories))


def model_style_ids(model: LatentModel, ds: ImageDataset, style_ids: np.ndarray) -> np.ndarray:
    """Dataset style ids -> the model's style ids, matched by name."""
    index = {s: i for i, s in enumerate(model.styles)}
    missing = sorted({ds.styles[s] for s in style_ids} - set(index))
    if missing:
        raise ValueError(f"the model has no style {missing}; it knows {list(model.styles)}")
    return np.asarray([index[ds.styles[s]] for s in style_ids], dtype=np.int64)


def evaluate(model: LatentModel, classifier: DomainClassifier, ds: ImageDataset, *, split: str = "validation",
             limit: int | None = None, seeds_per_prompt: int = 1, seed: int = 0, steps: int = 20,
             sampler: str = DEFAULT_SAMPLER, guidance: float = DEFAULT_GUIDANCE, batch_size: int = 32,
             kid_subsets: int = 100, progress: Callable[[Iterable], Iterable] | None = None) -> tuple[dict, np.ndarray]:
    """Returns the report (without provenance, which the caller adds) and the generated images
    (uint8 premultiplied RGBA, seed-major: all prompts with the first seed, then the next...)."""
    rows = prompt_rows(ds, split, limit)
    if len(rows) < 4:
        raise ValueError(f"the {split} split has {len(rows)} rows; metrics need at least 4")
    k = seeds_per_prompt
    captions = np.tile(rows.captions, k)
    styles = np.tile(model_style_ids(model, ds, rows.style_ids), k)
    seeds = np.arange(seed, seed + k * len(rows), dtype=np.uint64)
    t0 = time.perf_counter()
    images = generate(model, captions, styles, seeds, steps=steps, sampler=sampler, guidance=guidance,
                      batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0

    reference = embed(classifier, ds.subset(TRAIN).images)
    cats, stys = labels(rows, classifier.config)
    real = LabelledSet(embed(classifier, rows.images), cats, stys)
    fake = LabelledSet(embed(classifier, images), np.tile(cats, k), np.tile(stys, k))
    sets = {"generated": fake, "real": real}
    if hasattr(model, "reconstruct"):
        sets["reconstructed"] = LabelledSet(embed(classifier, model.reconstruct(rows.images)), cats, stys)
    report = {
        "generation": {"split": split, "prompts": len(rows), "seeds_per_prompt": k, "images": len(images),
                       "sampler": sampler, "steps": steps, "guidance": guidance, "seed": seed,
                       "sigma_min": model.sigma_min, "guidance_input": bool(getattr(model, "guidance_input", False)),
                       "seconds": round(seconds, 1)},
        "reference": {"split": "train", "images": len(reference)},
        "sets": {name: set_figures(s, reference, kid_subsets=kid_subsets) for name, s in sets.items()},
        "per_style": per_style(fake, real, classifier.config.styles),
    }
    return report, images


def per_style(fake: LabelledSet, real: LabelledSet, style_names) -> dict[str, dict[str, float]]:
    """Category and style adherence for each prompted style, generated vs real, and how the
    generated images' styles are classified."""
    out = {}
    k = len(fake.styles) // max(1, len(real.styles))
    for i, name in enumerate(style_names):
        f, r = fake.styles == i, real.styles == i
        if not r.any():
            continue
        out[name] = {
            "prompts": int(r.sum()) * k,
            "generated_category": adherence(fake.embedding.category_probs[f], fake.categories[f]),
            "generated_style": adherence(fake.embedding.style_probs[f], fake.styles[f]),
            "real_category": adherence(real.embedding.category_probs[r], real.categories[r]),
            "real_style": adherence(real.embedding.style_probs[r], real.styles[r]),
            # A row of the style confusion matrix: which style the classifier sees in these images.
            "generated_seen_as": {n: float(v) for n, v in zip(style_names, np.bincount(
                fake.embedding.style_probs[f].argmax(1), minlength=len(style_names)) / max(1, f.sum()), strict=True)},
        }
    return out


def model_contact_sheet(model: LatentModel, prompts=DEFAULT_PROMPTS, seeds=DEFAULT_SEEDS, *, steps: int = 20,
                        sampler: str = DEFAULT_SAMPLER, guidance: float = DEFAULT_GUIDANCE, batch_size: int = 32,
                        progress: Callable[[Iterable], Iterable] | None = None):
    """Fixed prompts x every real style of the model x fixed seeds -> the labelled sheet (PIL)."""
    styles = [s for s in model.styles if s != "none"]
    style_ids = [model.styles.index(s) for s in styles]
    p, s, k = len(prompts), len(styles), len(seeds)
    # Row order prompt, style, seed; the seed alone decides the noise, so one seed gives the same
    # starting noise in every cell of its column, and the cells differ only by prompt and style.
    grid_captions = np.repeat(np.asarray(prompts), s * k)
    grid_styles = np.tile(np.repeat(style_ids, k), p)
    grid_seeds = np.tile(np.asarray(seeds, dtype=np.uint64), p * s)
    images = generate(model, grid_captions, grid_styles, grid_seeds, steps=steps, sampler=sampler,
                      guidance=guidance, batch_size=batch_size, progress=progress)
    return contact_sheet(images.reshape(p, s, k, *images.shape[1:]), list(prompts), styles, list(seeds))
