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
    import diffusers
    import transformers

    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    unet_class = index["unet"][1]
    if unet_class not in ("UNet2DConditionModel", "UNet2DModel"):
        raise ValueError(f"{path}: unet class {unet_class} is not supported (UNet2DConditionModel, UNet2DModel)")
    kw = {"use_safetensors": True, "local_files_only": True}
    unet = getattr(diffusers, unet_class).from_pretrained(path / "unet", **kw).eval().float()
    vae = diffusers.AutoencoderKL.from_pretrained(path / "vae", **kw).eval().float()
    sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    conditional = unet_class == "UNet2DConditionModel"

    components: list[Component] = []
    tok_json, text_spec = "{}", TextEncoderSpec(kind="none", name="", max_tokens=1, hidden_size=0)
    if conditional:
        text_model = transformers.AutoModel.from_pretrained(path / "text_encoder", **kw).eval().float()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
        max_tokens = int(min(tokenizer.model_max_length, text_model.config.max_position_embeddings))
        is_clip = "clip" in text_model.config.model_type
        pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        wrapper = ClipTokens(text_model) if is_clip else BertTokens(text_model)
        components.append(text_component(wrapper, text_model.config.vocab_size, max_tokens, text_fp16))
        tok_json = tokenizer_json(tokenizer.backend_tokenizer, max_tokens, pad_id, tokenizer.pad_token)
        text_spec = TextEncoderSpec(kind="clip" if is_clip else "sentence-transformer",
                                    name=text_model.config.model_type, max_tokens=max_tokens,
                                    hidden_size=text_model.config.hidden_size, pooling="none", pad_token_id=pad_id)

    c = unet.config.in_channels
    size = unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    L, D = text_spec.max_tokens, unet.config.get("cross_attention_dim", 0) or 0
    T = int(sched.get("num_train_timesteps", 1000))

    def unet_example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        x = torch.randn(batch, c, size, size, generator=g)
        t = torch.randint(0, T, (batch,), generator=g).float()
        if conditional:
            return x, t, torch.randn(batch, L, D, generator=g)
        return x, t

    names = ("sample", "timestep", "encoder_hidden_states") if conditional else ("sample", "timestep")
    axes = {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"}}
    if conditional:
        axes["encoder_hidden_states"] = {0: "batch"}
    factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def unet_component(module: nn.Module, variant: str) -> Component:
        return Component("unet", UNetWrapper(module, conditional), names, "out", unet_example, dict(axes),
                         variant=variant)

    def decode_example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, vae.config.latent_channels, size, size, generator=g),)

    def encode_example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch, vae.config.in_channels, size * factor, size * factor, generator=g) * 2 - 1,)

    spatial = {0: "batch", 2: "height", 3: "width"}
    components.insert(0, unet_component(unet, "default"))
    components.insert(1, Component("vae_decoder", DecodeWrapper(vae), ("latent",), "image", decode_example,
                                   {"latent": dict(spatial)}))
    components.insert(2, Component("vae_encoder", EncodeWrapper(vae), ("image",), "latent", encode_example,
                                   {"image": dict(spatial)}))
    if tiling:
        components.append(unet_component(_circular(unet), "tiling"))
        components.append(Component("vae_decoder", DecodeWrapper(_circular(vae)), ("latent",), "image",
                                    decode_example, {"latent": dict(spatial)}, variant="tiling"))

    prediction = sched.get("prediction_type", "epsilon")
    spacing = sched.get("timestep_spacing", "leading")
    return Source(
        kind="diffusers", path=path, components=components, tokenizer_json=tok_json,
        image=ImageSpec(width=size * factor, height=size * factor, channels=vae.config.out_channels,
                        premultiplied_alpha=False),
        latent=LatentSpec(channels=c, factor=factor, width=size, height=size,
                          scale=float(vae.config.scaling_factor), shift=float(vae.config.get("shift_factor") or 0.0),
                          dynamic_size=False),
        schedule=ScheduleSpec(kind="discrete", beta_schedule=sched.get("beta_schedule", "scaled_linear"),
                              beta_start=float(sched.get("beta_start", 0.00085)),
                              beta_end=float(sched.get("beta_end", 0.012)), num_train_timesteps=T,
                              timestep_spacing=spacing, steps_offset=int(sched.get("steps_offset", 0))),
        unet=UNetSpec(prediction={"sample": "x0"}.get(prediction, prediction), time_input="timestep",
                      cond_inputs=("encoder_hidden_states",) if conditional else (),
                      padding_modes=("zeros", "circular") if tiling else ("zeros",)),
        text_encoder=text_spec,
        defaults=Defaults(sampler="euler", steps=30, guidance_scale=7.5, schedule=spacing),
        provenance={"diffusers_version": index.get("_diffusers_version", ""), "pipeline": index.get("_class_name", ""),
                    "scheduler": sched.get("_class_name", "")},
        description=f"{index.get('_class_name', 'diffusers pipeline')} exported from {path.name}",
    )
