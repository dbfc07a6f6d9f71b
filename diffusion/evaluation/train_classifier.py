"""Training the domain classifier on the train split of an image dataset.

Plain supervised training: the sum of the two heads' cross-entropies, AdamW (Loshchilov &
Hutter 2019) with a one-cycle learning rate (Smith & Topin 2019), and two label-preserving
augmentations: small translations (zero padding is a transparent pixel in premultiplied RGBA)
and horizontal flips. Seeded: the same data and seed give the same weights on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from diffusion.data.dataset import TRAIN, VALIDATION, ImageDataset
from diffusion.evaluation.classifier import ClassifierConfig, DomainClassifier, to_input
from diffusion.evaluation.embed import embed


@dataclass
class TrainOptions:
    epochs: int = 24
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    max_shift: int = 2          # pixels of random translation
    flip: bool = True
    seed: int = 0


def labels(ds: ImageDataset, cfg: ClassifierConfig) -> tuple[np.ndarray, np.ndarray]:
    """Category and style targets in the classifier's label spaces (style 'none' has no class)."""
    cat_index = {c: i for i, c in enumerate(cfg.categories)}
    sty_index = {s: i for i, s in enumerate(cfg.styles)}
    cats = np.asarray([cat_index[ds.categories[c]] for c in ds.category_ids], dtype=np.int64)
    stys = np.asarray([sty_index.get(ds.styles[s], -1) for s in ds.style_ids], dtype=np.int64)
    return cats, stys


def config_for(ds: ImageDataset, **overrides) -> ClassifierConfig:
    """A config whose label spaces are the dataset's categories and (real) styles."""
    return ClassifierConfig(image_size=int(ds.images.shape[1]), categories=tuple(ds.categories),
                            styles=tuple(s for s in ds.styles[1:]), **overrides)


def _augment(x: torch.Tensor, opts: TrainOptions, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    if opts.flip:
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if opts.max_shift:
        p = opts.max_shift
        padded = F.pad(x, (p, p, p, p), value=-1.0)  # -1 is a transparent pixel in [-1, 1]
        dy, dx = torch.randint(0, 2 * p + 1, (2,), generator=gen).tolist()
        x = padded[:, :, dy:dy + h, dx:dx + w]
    return x


def accuracy(model: DomainClassifier, ds: ImageDataset, which: int | None = None) -> dict[str, float]:
    """Top-1 accuracy of both heads on one split (``None``: all rows)."""
    part = ds if which is None else ds.subset(which)
    if len(part) == 0:
        return {"images": 0, "category": float("nan"), "style": float("nan")}
    e = embed(model, part.images)
    cats, stys = labels(part, model.config)
    has_style = stys >= 0
    return {
        "images": len(part),
        "category": float((e.category_probs.argmax(1) == cats).mean()),
        "style": float((e.style_probs.argmax(1)[has_style] == stys[has_style]).mean()),
    }


def train_classifier(ds: ImageDataset, cfg: ClassifierConfig | None = None, opts: TrainOptions | None = None,
                     progress: Callable[[Iterable], Iterable] | None = None) -> tuple[DomainClassifier, dict]:
    """Train on the train split; returns the model (eval mode) and its train/validation accuracy.

    ``progress`` wraps the step iterator (the CLI passes tqdm; the library prints nothing)."""
    cfg = cfg or config_for(ds)
    opts = opts or TrainOptions()
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    model = DomainClassifier(cfg)
    train = ds.subset(TRAIN)
    x_all = to_input(train.images, cfg.image_size)
    cats, stys = (torch.from_numpy(a) for a in labels(train, cfg))
    n = len(train)
    steps_per_epoch = max(1, n // opts.batch_size)
    total = steps_per_epoch * opts.epochs
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=opts.lr, total_steps=total)
    model.train()
    start = time.perf_counter()
    steps = range(total)
    for step in progress(steps) if progress else steps:
        if step % steps_per_epoch == 0:
            order = torch.randperm(n, generator=gen)
        idx = order[(step % steps_per_epoch) * opts.batch_size:][:opts.batch_size]
        _, c_logits, s_logits = model(_augment(x_all[idx], opts, gen))
        # Rows without a real style (a dataset's "none") contribute no style loss.
        loss = F.cross_entropy(c_logits, cats[idx]) + F.cross_entropy(s_logits, stys[idx], ignore_index=-1)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
    seconds = time.perf_counter() - start
    model.eval()
    metrics = {
        "train": accuracy(model, ds, TRAIN),
        "validation": accuracy(model, ds, VALIDATION),
        "steps": total,
        "epochs": opts.epochs,
        "batch_size": opts.batch_size,
        "seed": opts.seed,
        "train_seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, metrics
