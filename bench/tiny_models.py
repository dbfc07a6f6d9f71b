"""Tiny random models: an Atelier checkpoint folder, its exported repository, an upscaler package
and its repository, and a diffusers Stable Diffusion pipeline folder, built from configs (no hub
downloads). The benchmarks' --quick runs and the tests use them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE
from export.text_encoders import minilm_dir

TEXT_DIM = 32


def _perturb(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Random weights everywhere: zero-initialised output layers would make parity trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return module


def tiny_bert(folder: Path) -> None:
    import transformers

    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=TEXT_DIM, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64)
    model = _perturb(transformers.BertModel(cfg).eval(), 3, 0.02)
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(minilm_dir() / "tokenizer.json", folder / "tokenizer.json")


def atelier_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vae_cfg = VAEConfig(channels=(16, 32, 32), groups=8)
    unet_cfg = UNetConfig(channels=(16, 32), num_res_blocks=1, attention=(False, True), heads=2, context_dim=TEXT_DIM,
                          num_styles=3, embed_dim=32, groups=8)
    cfg = ModelConfig(vae=vae_cfg.to_dict(), unet=unet_cfg.to_dict(), edm=EDMConfig().to_dict(),
                      text=TextConfig(max_length=8, dim=TEXT_DIM).to_dict(),
                      latent=LatentConfig(image_size=16, latent_size=4, scale=0.8, shift=0.1).to_dict(),
                      styles=("none", "noto", "twemoji"))
    data = cfg.to_dict()
    data["data_card"] = {"sets": ["test"]}
    data["licenses"] = [{"set": "test", "license": "CC0-1.0"}]
    (folder / "config.json").write_text(json.dumps(data))
    torch.manual_seed(0)
    save_file(_perturb(VAE(vae_cfg), 1).state_dict(), str(folder / "vae.safetensors"))
    save_file(_perturb(UNet(unet_cfg), 2).state_dict(), str(folder / "unet_ema.safetensors"))
    tiny_bert(folder / "text_encoder")
    return folder


def tiny_repository(root: Path, *flags: str) -> Path:
    """A model repository under `root/models` holding `tiny/1`, exported from a tiny random
    checkpoint with the `atelier export` flags given (e.g. "--tiling")."""
    from atelier_cli.main import main as atelier

    ckpt = atelier_checkpoint(root / "ckpt")
    models = root / "models"
    if atelier(["export", str(ckpt), "--name", "tiny", "--version", "1", "--out", str(models), *flags]) != 0:
        raise RuntimeError("exporting the tiny checkpoint failed")
    return models


# --- a tiny x4 upscaler -------------------------------------------------------------------------

# Smaller tiles than a shipped upscaler's, so a 40² input already runs in several.
TINY_UPSCALER_INFERENCE = {"aug_level": 0.05, "default_steps": 2, "max_input_side": 128, "tile": 24,
                           "tile_overlap": 10, "image_size": 32}


def upscaler_package(folder: Path, fast: bool = True) -> Path:
    """An upscaler package (export/sources/upscaler.py) with random diffusion and CNN networks."""
    from diffusion.nets.upscaler import DiffusionUpscaler, FastUpscaler, UpscalerConfig

    folder.mkdir(parents=True, exist_ok=True)
    small = {"width": (8, 16), "num_blocks": (1, 1), "embed_dim": 16, "sigma_data": 0.12}
    cfg = UpscalerConfig(arch="diffusion", **small)
    config = {"kind": "upscaler", "upscaler": cfg.to_dict(), "inference": dict(TINY_UPSCALER_INFERENCE),
              "description": "tiny random upscaler", "data_card": {"sets": ["test"]},
              "licenses": [{"set": "test", "license": "CC0-1.0"}]}
    torch.manual_seed(0)
    save_file(_perturb(DiffusionUpscaler(cfg), 5).state_dict(), str(folder / "upscaler_ema.safetensors"))
    if fast:
        fast_cfg = UpscalerConfig(arch="cnn", **small)
        config["upscaler_fast"] = fast_cfg.to_dict()
        save_file(_perturb(FastUpscaler(fast_cfg), 6).state_dict(), str(folder / "upscaler_fast_ema.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def tiny_upscaler_repository(root: Path, *flags: str) -> Path:
    """A model repository under `root/models` holding `tiny-upscale/1`, exported from a tiny random
    upscaler package with the `atelier export` flags given (e.g. "--optimize")."""
    from atelier_cli.main import main as atelier

    package = upscaler_package(root / "upscaler-package")
    models = root / "models"
    if atelier(["export", str(package), "--name", "tiny-upscale", "--version", "1", "--out", str(models),
                *flags]) != 0:
        raise RuntimeError("exporting the tiny upscaler failed")
    return models


# --- a tiny Stable Diffusion pipeline ------------------------------------------------------------

SD_WORDS = ("a", "red", "heart", "cat", "face", "green", "tree")


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2 / CLIP convention)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    out, n = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + n))
            n += 1
    return out


def tiny_clip_tokenizer(max_length: int = 16):
    """A CLIP BPE tokenizer over a small vocabulary written here: every byte, every byte at a
    word's end, and merges that build the words of SD_WORDS."""
    import transformers

    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges: list[tuple[str, str]] = []
    for word in SD_WORDS:
        toks = [*word[:-1], word[-1] + "</w>"]
        while len(toks) > 1:
            pair = (toks[0], toks[1])
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            toks = [pair[0] + pair[1], *toks[2:]]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def sd_pipeline(folder: Path):
    """StableDiffusionPipeline with random weights, tiny configs, Euler with trailing spacing."""
    import diffusers
    import transformers

    torch.manual_seed(0)
    tokenizer = tiny_clip_tokenizer()
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)).eval()
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8).eval()
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(16, 32), latent_channels=4,
        norm_num_groups=8, sample_size=16).eval()
    _perturb(unet, 4, 0.02)
    scheduler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 num_train_timesteps=1000, timestep_spacing="trailing",
                                                 steps_offset=1)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


# --- a tiny consistency-distilled ("fast") model ------------------------------------------------


def fast_checkpoint(folder: Path, teacher: Path) -> Path:
    """A random student of the tiny checkpoint `teacher` as `atelier train package-fast` lays one
    out: the teacher's VAE and text encoder, a UNet with the guidance input, a `consistency` section
    and fast-mode defaults (docs/MODEL.md, "Fast mode")."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads((teacher / "config.json").read_text())
    data["unet"] = {**data["unet"], "guidance_embed": True}
    data["consistency"] = {"sigma_min": 0.002, "guidance_range": [2.0, 8.0], "sample_sigma_min": 0.5}
    data["defaults"] = {"sampler": "lcm", "steps": 4, "guidance_scale": 5.0, "schedule": "karras"}
    (folder / "config.json").write_text(json.dumps(data))
    shutil.copy(teacher / "vae.safetensors", folder / "vae.safetensors")
    shutil.copytree(teacher / "text_encoder", folder / "text_encoder", dirs_exist_ok=True)
    torch.manual_seed(0)
    save_file(_perturb(UNet(UNetConfig.from_dict(data["unet"])), 7).state_dict(), str(folder / "unet_ema.safetensors"))
    return folder


def tiny_fast_repository(root: Path, *flags: str) -> Path:
    """A model repository under `root/models` holding `tiny/1` and its random student `tiny-fast/1`,
    exported with `--reuse-from` the teacher's version (and the `atelier export` flags given)."""
    from atelier_cli.main import main as atelier

    models = tiny_repository(root, *flags)
    student = fast_checkpoint(root / "fast-ckpt", root / "ckpt")
    if atelier(["export", str(student), "--name", "tiny-fast", "--version", "1", "--out", str(models),
                "--reuse-from", str(models / "tiny" / "1"), *flags]) != 0:
        raise RuntimeError("exporting the tiny student failed")
    return models
