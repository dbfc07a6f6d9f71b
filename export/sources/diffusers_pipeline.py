"""A diffusers pipeline folder (a studio's own Stable Diffusion checkpoint) as export components.

Read: `model_index.json`, `unet/` (UNet2DConditionModel, or UNet2DModel for unconditional
models), `vae/` (AutoencoderKL), `text_encoder/` (CLIPTextModel, or a BERT-family
sentence-transformer) with `tokenizer/`, and `scheduler/scheduler_config.json` for the
training noise schedule and prediction type. Safetensors weights only.

The UNet keeps its native interface, (sample, timestep, encoder_hidden_states) -> eps or v;
the runtime's VPDenoiser adapter turns it into denoise(x, sigma, cond) -> x0.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from export.component import Component
from export.source import Source
from export.text_encoders import BertTokens, ClipTokens, text_component, tokenizer_json
from repository.manifest import Defaults, ImageSpec, LatentSpec, ScheduleSpec, TextEncoderSpec, UNetSpec


class UNetWrapper(nn.Module):
    def __init__(self, unet: nn.Module, conditional: bool):
        super().__init__()
        self.unet = unet
        self.conditional = conditional

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, *states: torch.Tensor) -> torch.Tensor:
        if self.conditional:
            return self.unet(sample, timestep, encoder_hidden_states=states[0], return_dict=False)[0]
        return self.unet(sample, timestep, return_dict=False)[0]


class DecodeWrapper(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent, return_dict=False)[0]


class EncodeWrapper(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(image).latent_dist.mean


def _circular(module: nn.Module) -> nn.Module:
    """Seamless tiles: every convolution wraps around instead of padding with zeros."""
    module = copy.deepcopy(module)
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.padding != (0, 0):
            m.padding_mode = "circular"
    return module


def load_diffusers(path: Path, tiling: bool = False, text_fp16: bool = False) -> Source:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    index, sched = _read_json(path / "model_index.json"), _read_json(path / "scheduler" / "scheduler_config.json")
    unet, vae = _load_networks(path, index)
    conditional = index["unet"][1] == "UNet2DConditionModel"
    text = _load_text_encoder(path, text_fp16) if conditional else _NO_TEXT
    shape = _Shape(unet, vae, text.spec.max_tokens, int(sched.get("num_train_timesteps", 1000)), conditional)
    components = [*_network_components(unet, vae, shape, "default"), *text.components]
    if tiling:
        components += _network_components(_circular(unet), _circular(vae), shape, "tiling")
    return _source(path, index, sched, shape, vae, components, text, tiling)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _load_networks(path: Path, index: dict) -> tuple[nn.Module, nn.Module]:
    import diffusers

    unet_class = index["unet"][1]
    if unet_class not in ("UNet2DConditionModel", "UNet2DModel"):
        raise ValueError(f"{path}: unet class {unet_class} is not supported (UNet2DConditionModel, UNet2DModel)")
    unet = getattr(diffusers, unet_class).from_pretrained(path / "unet", **_LOCAL_SAFETENSORS).eval().float()
    vae = diffusers.AutoencoderKL.from_pretrained(path / "vae", **_LOCAL_SAFETENSORS).eval().float()
    return unet, vae


_LOCAL_SAFETENSORS = {"use_safetensors": True, "local_files_only": True}


@dataclass(frozen=True)
class _Text:
    components: tuple[Component, ...]
    tokenizer_json: str
    spec: TextEncoderSpec


_NO_TEXT = _Text((), "{}", TextEncoderSpec(kind="none", name="", max_tokens=1, hidden_size=0))


def _load_text_encoder(path: Path, text_fp16: bool) -> _Text:
    import transformers

    text_model = transformers.AutoModel.from_pretrained(path / "text_encoder", **_LOCAL_SAFETENSORS).eval().float()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    config = text_model.config
    max_tokens = int(min(tokenizer.model_max_length, config.max_position_embeddings))
    is_clip = "clip" in config.model_type
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    wrapper = ClipTokens(text_model) if is_clip else BertTokens(text_model)
    return _Text(
        (text_component(wrapper, config.vocab_size, max_tokens, text_fp16),),
        tokenizer_json(tokenizer.backend_tokenizer, max_tokens, pad_id, tokenizer.pad_token),
        TextEncoderSpec(kind="clip" if is_clip else "sentence-transformer", name=config.model_type,
                        max_tokens=max_tokens, hidden_size=config.hidden_size, pooling="none", pad_token_id=pad_id),
    )


class _Shape:
    """The sizes the example inputs of every component are drawn at."""

    def __init__(self, unet: nn.Module, vae: nn.Module, max_tokens: int, train_timesteps: int, conditional: bool):
        size = unet.config.sample_size
        self.latent_channels, self.size = unet.config.in_channels, size if isinstance(size, int) else size[0]
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.tokens, self.context = max_tokens, unet.config.get("cross_attention_dim", 0) or 0
        self.train_timesteps, self.conditional = train_timesteps, conditional
        self.vae_latent_channels, self.image_channels = vae.config.latent_channels, vae.config.in_channels

    def unet_example(self, batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        x = torch.randn(batch, self.latent_channels, self.size, self.size, generator=g)
        t = torch.randint(0, self.train_timesteps, (batch,), generator=g).float()
        return (x, t, torch.randn(batch, self.tokens, self.context, generator=g)) if self.conditional else (x, t)

    def decode_example(self, batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, self.vae_latent_channels, self.size, self.size, generator=g),)

    def encode_example(self, batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        pixels = self.size * self.factor
        return (torch.rand(batch, self.image_channels, pixels, pixels, generator=g) * 2 - 1,)


_SPATIAL = {0: "batch", 2: "height", 3: "width"}


def _network_components(unet: nn.Module, vae: nn.Module, shape: _Shape, variant: str) -> list[Component]:
    """The UNet and the VAE decoder, and for the default variant the VAE encoder (tiling has none:
    an init image is encoded once, not tiled)."""
    names = ("sample", "timestep", "encoder_hidden_states") if shape.conditional else ("sample", "timestep")
    axes = {"sample": dict(_SPATIAL), "timestep": {0: "batch"}}
    if shape.conditional:
        axes["encoder_hidden_states"] = {0: "batch"}
    out = [
        Component("unet", UNetWrapper(unet, shape.conditional), names, "out", shape.unet_example, axes,
                  variant=variant),
        Component("vae_decoder", DecodeWrapper(vae), ("latent",), "image", shape.decode_example,
                  {"latent": dict(_SPATIAL)}, variant=variant),
    ]
    if variant == "default":
        out.append(Component("vae_encoder", EncodeWrapper(vae), ("image",), "latent", shape.encode_example,
                             {"image": dict(_SPATIAL)}))
    return out


def _source(path: Path, index: dict, sched: dict, shape: _Shape, vae: nn.Module, components: list[Component],
            text: _Text, tiling: bool) -> Source:
    prediction = sched.get("prediction_type", "epsilon")
    spacing = sched.get("timestep_spacing", "leading")
    pixels = shape.size * shape.factor
    return Source(
        kind="diffusers", path=path, components=components, tokenizer_json=text.tokenizer_json,
        image=ImageSpec(width=pixels, height=pixels, channels=vae.config.out_channels, premultiplied_alpha=False),
        latent=LatentSpec(channels=shape.latent_channels, factor=shape.factor, width=shape.size, height=shape.size,
                          scale=float(vae.config.scaling_factor), shift=float(vae.config.get("shift_factor") or 0.0),
                          dynamic_size=False),
        schedule=ScheduleSpec(kind="discrete", beta_schedule=sched.get("beta_schedule", "scaled_linear"),
                              beta_start=float(sched.get("beta_start", 0.00085)),
                              beta_end=float(sched.get("beta_end", 0.012)), num_train_timesteps=shape.train_timesteps,
                              timestep_spacing=spacing, steps_offset=int(sched.get("steps_offset", 0))),
        unet=UNetSpec(prediction={"sample": "x0"}.get(prediction, prediction), time_input="timestep",
                      cond_inputs=("encoder_hidden_states",) if shape.conditional else (),
                      padding_modes=("zeros", "circular") if tiling else ("zeros",)),
        text_encoder=text.spec,
        defaults=Defaults(sampler="euler", steps=30, guidance_scale=7.5, schedule=spacing),
        provenance={"diffusers_version": index.get("_diffusers_version", ""), "pipeline": index.get("_class_name", ""),
                    "scheduler": sched.get("_class_name", "")},
        description=f"{index.get('_class_name', 'diffusers pipeline')} exported from {path.name}",
    )
