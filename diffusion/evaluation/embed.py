"""Images -> what every metric needs: classifier features and class probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffusion.evaluation.classifier import DomainClassifier, to_input


@dataclass(frozen=True)
class Embedding:
    """Per image: penultimate features [N, D] and softmax probabilities of both heads."""
    features: np.ndarray
    category_probs: np.ndarray
    style_probs: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])


@torch.no_grad()
def embed(model: DomainClassifier, images: np.ndarray, batch_size: int = 256) -> Embedding:
    """Run the classifier (eval mode) over uint8 premultiplied RGBA images [N,H,W,4]."""
    was_training = model.training
    model.eval()
    feats, cats, stys = [], [], []
    for i in range(0, len(images), batch_size):
        f, c, s = model(to_input(images[i:i + batch_size], model.config.image_size))
        feats.append(f.double().numpy())
        cats.append(torch.softmax(c.double(), dim=1).numpy())
        stys.append(torch.softmax(s.double(), dim=1).numpy())
    model.train(was_training)
    d, nc, ns = model.config.feature_dim, len(model.config.categories), len(model.config.styles)
    return Embedding(
        features=np.concatenate(feats) if feats else np.zeros((0, d)),
        category_probs=np.concatenate(cats) if cats else np.zeros((0, nc)),
        style_probs=np.concatenate(stys) if stys else np.zeros((0, ns)),
    )
