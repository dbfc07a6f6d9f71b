"""A perceptual distance in the domain classifier's feature space (LPIPS-style, uncalibrated).

LPIPS (Zhang et al. 2018, "The unreasonable effectiveness of deep features as a perceptual
metric", eq. 1) compares two images through a network's activations at several depths:
unit-normalise each position's channel vector, take squared differences, average over space,
sum over layers. Its backbones (AlexNet/VGG ImageNet weights) cannot be downloaded here, so the
network is the project's domain classifier (diffusion/evaluation/classifier.py), with every
layer weighted equally: the paper's "baseline" (uncalibrated) variant, which it finds already
far closer to human judgements than PSNR or SSIM.

Why at full resolution and not on 32² features: the classifier was trained on 32² images, but
an x4 upscaler's 32² input *is* the 128² image box-downsampled to 32², so comparing 32²
downsamples (or the classifier's pooled 32² features) measures only whether the output keeps
the input's content, which bicubic already nearly does; the detail super-resolution adds
disappears in the downsampling. The classifier is fully convolutional (convolutions, batch norm
in inference mode, max-pooling), so its stages run on the 128² images as they are: its early
filters respond to edges, colour and texture at the finer scale, which is what SR must get right.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from diffusion.evaluation.classifier import DomainClassifier

__all__ = ["stage_features", "perceptual_distance"]


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 premultiplied RGBA [N, H, W, 4] -> float [N, 4, H, W] in [-1, 1], no resizing."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def stage_features(model: DomainClassifier, x: torch.Tensor) -> list[torch.Tensor]:
    """The activations at the end of every stage (before each max-pool) and of the last layer."""
    out = []
    for layer in model.body:
        if isinstance(layer, nn.MaxPool2d):
            out.append(x)
        x = layer(x)
    out.append(x)
    return out


def _unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + eps)


@torch.no_grad()
def perceptual_distance(model: DomainClassifier, images: np.ndarray, reference: np.ndarray,
                        batch_size: int = 32) -> np.ndarray:
    """Per image: the mean over the classifier's stages of the spatially averaged squared distance
    between unit-normalised activations (0 for identical images, at most 4 per stage)."""
    if images.shape != reference.shape:
        raise ValueError(f"shapes differ: {images.shape} vs {reference.shape}")
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        fa = stage_features(model, _to_tensor(images[i:i + batch_size]))
        fb = stage_features(model, _to_tensor(reference[i:i + batch_size]))
        per_stage = [(_unit(a) - _unit(b)).square().sum(dim=1).mean(dim=(1, 2)) for a, b in zip(fa, fb, strict=True)]
        out.append(torch.stack(per_stage).mean(dim=0).double().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)
