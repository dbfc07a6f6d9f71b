"""The domain classifier: a small CNN over premultiplied RGBA with a category and a style head.

Why a domain classifier and not Inception-v3: FID/IS computed with an ImageNet network on
32x32 emoji measure mostly ImageNet's idea of a blurry thumbnail. Features of a network trained
on the domain itself track what matters here (which emoji, which art style); the same choice
is made for MNIST/CIFAR-scale models in the literature (e.g. the "FID in a domain feature space"
of Kynkäänniemi et al. 2023, "The role of ImageNet classes in Fréchet Inception Distance").

The penultimate layer (global-average-pooled, post-ReLU, like Inception's pool3 used by
Heusel et al. 2017) is the feature space; the two softmax heads give p(category | x) and
p(style | x). Weights are safetensors beside a JSON config, never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from diffusion.nets.config import JsonConfig
from diffusion.nets.layers import conv_bn, vgg_stages

WEIGHTS = "classifier.safetensors"
CONFIG = "config.json"


@dataclass
class ClassifierConfig(JsonConfig):
    """Architecture and label spaces. ``styles`` are the real styles only (the dataset's style
    0, "none", is a sampling option, not something an image can be)."""
    image_size: int = 32                          # inputs of another size are resized to this
    in_channels: int = 4                          # premultiplied RGBA
    channels: tuple[int, ...] = (32, 64, 128)     # one stage per entry, 2 convs each, 2x pool between
    feature_dim: int = 128                        # penultimate width: the FID/KID feature space
    dropout: float = 0.2
    categories: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()


class DomainClassifier(nn.Module):
    """VGG-style stages (Simonyan & Zisserman 2015) with batch norm (Ioffe & Szegedy 2015),
    global average pooling (Lin et al. 2014, "Network in network") and two linear heads."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.config = cfg
        self.body = nn.Sequential(*vgg_stages(cfg.in_channels, cfg.channels),
                                  *conv_bn(cfg.channels[-1], cfg.feature_dim))
        self.dropout = nn.Dropout(cfg.dropout)
        self.category_head = nn.Linear(cfg.feature_dim, len(cfg.categories))
        self.style_head = nn.Linear(cfg.feature_dim, len(cfg.styles))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,4,H,W] in [-1,1] -> penultimate features [B, feature_dim]."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (features, category logits, style logits)."""
        f = self.features(x)
        h = self.dropout(f)
        return f, self.category_head(h), self.style_head(h)


def to_input(images: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 premultiplied RGBA [B,H,W,4] -> float [B,4,S,S] in [-1,1] (the VAE's pixel range).

    Resizing is antialiased bilinear on premultiplied values, where transparent pixels carry no
    colour (Porter & Duff 1984), so edges do not pick up a dark fringe."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def save_classifier(model: DomainClassifier, folder: str | Path, metrics: dict | None = None) -> Path:
    """Write ``classifier.safetensors`` + ``config.json`` (+ ``metrics.json``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    model.config.save(folder / CONFIG)
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return folder


def load_classifier(folder: str | Path) -> DomainClassifier:
    """The classifier saved in ``folder``, in eval mode."""
    folder = Path(folder)
    model = DomainClassifier(ClassifierConfig.load(folder / CONFIG))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return model.eval()
