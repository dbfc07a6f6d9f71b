"""The output concept classifier: a small multi-label CNN over 32x32 premultiplied RGBA.

One sigmoid a concept (a weapon, a drink, ...; diffusion/data/concept_labels.py), so an image
may show several or none. VGG-style stages (Simonyan & Zisserman 2015) with batch norm (folded
into the convolutions by ONNX Runtime), global average and max pooling side by side (a small
object in a corner still fires the max), one linear layer. Its ONNX file maps ``image``
[B,4,32,32] in [-1, 1] to ``logits`` [B, concepts]; the worker applies the sigmoid and the
manifest's thresholds (docs/MODEL_REPOSITORY.md, "Concept classifiers").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffusion.nets.config import JsonConfig
from diffusion.nets.layers import vgg_stages

WEIGHTS = "concept_classifier.safetensors"


@dataclass
class ConceptNetConfig(JsonConfig):
    image_size: int = 32
    in_channels: int = 4                      # premultiplied RGBA in [-1, 1]
    channels: tuple[int, ...] = (16, 32, 64)  # one stage per entry, two 3x3 convs each, 2x pool between
    dropout: float = 0.2
    concepts: tuple[str, ...] = ()


class ConceptNet(nn.Module):
    def __init__(self, cfg: ConceptNetConfig):
        super().__init__()
        if not cfg.concepts:
            raise ValueError("a concept classifier needs at least one concept")
        self.config = cfg
        self.body = nn.Sequential(*vgg_stages(cfg.in_channels, cfg.channels))
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.channels[-1], len(cfg.concepts))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image [B,4,S,S] in [-1, 1] -> logits [B, concepts]."""
        h = self.body(image)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


def save_concept_net(model: ConceptNet, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    return folder / WEIGHTS


def load_concept_net(folder: Path, cfg: ConceptNetConfig) -> ConceptNet:
    model = ConceptNet(cfg)
    model.load_state_dict(load_file(str(Path(folder) / WEIGHTS)))
    return model.eval()
