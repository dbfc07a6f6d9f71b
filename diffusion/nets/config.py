"""Network configs: plain dataclasses that round-trip through JSON (docs/ARCHITECTURE.md, Contracts: configuration)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class JsonConfig:
    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for k, v in d.items():
            if k in names:
                kwargs[k] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))  # type: ignore[attr-defined]


@dataclass
class VAEConfig(JsonConfig):
    """KL-regularised autoencoder (Kingma & Welling 2014; as used by Rombach et al. 2022).
    ``len(channels) - 1`` stride-2 downsamplings: (64, 128, 128) is 4x."""
    in_channels: int = 4                 # RGBA, premultiplied, in [-1, 1]
    latent_channels: int = 4
    channels: tuple[int, ...] = (64, 128, 128)
    num_res_blocks: int = 1
    groups: int = 32
    padding_mode: str = "zeros"          # "zeros" or "circular" (seamless tiles)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)


@dataclass
class UNetConfig(JsonConfig):
    """Latent UNet (Ronneberger 2015; Ho 2020; Dhariwal & Nichol 2021) with self- and
    cross-attention to text token states (Rombach et al. 2022) and a learned style embedding."""
    in_channels: int = 4
    out_channels: int = 4
    channels: tuple[int, ...] = (128, 256)
    num_res_blocks: int = 2
    attention: tuple[bool, ...] = (True, True)   # self + cross attention at each level
    heads: int = 4
    context_dim: int = 384                        # all-MiniLM-L6-v2 token states
    num_styles: int = 4                           # style 0 = "none" (unconditional)
    embed_dim: int = 512
    groups: int = 32
    dropout: float = 0.0
    padding_mode: str = "zeros"
    # A guidance-scale input w embedded beside the noise level (LCM, Luo et al. 2023, §4.2):
    # a distilled student draws guided images in one network row per step. Off for every model
    # trained with classifier-free guidance at sampling time.
    guidance_embed: bool = False


@dataclass
class EDMConfig(JsonConfig):
    """Preconditioning and training noise distribution of Karras et al. 2022 (EDM), Table 1."""
    sigma_data: float = 1.0    # latents are scaled to unit standard deviation
    # EDM's P_mean = -1.2 is for sigma_data = 0.5; the same distribution relative to sigma_data
    # is P_mean = -1.2 + ln(sigma_data / 0.5).
    p_mean: float = -1.2 + 0.6931471805599453
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0


@dataclass
class TextConfig(JsonConfig):
    encoder: str = "all-MiniLM-L6-v2"
    max_length: int = 24       # token states [B, 24, 384]; captions are short emoji names
    dim: int = 384


@dataclass
class LatentConfig(JsonConfig):
    """Image <-> latent: z = (mean(E(x)) - shift) * scale has unit std over the training set."""
    image_size: int = 32
    latent_size: int = 8
    latent_channels: int = 4
    scale: float = 1.0
    shift: float = 0.0


@dataclass
class ModelConfig(JsonConfig):
    vae: dict = field(default_factory=lambda: VAEConfig().to_dict())
    unet: dict = field(default_factory=lambda: UNetConfig().to_dict())
    edm: dict = field(default_factory=lambda: EDMConfig().to_dict())
    text: dict = field(default_factory=lambda: TextConfig().to_dict())
    latent: dict = field(default_factory=lambda: LatentConfig().to_dict())
    styles: tuple[str, ...] = ("none", "noto", "twemoji", "fluent-flat")
