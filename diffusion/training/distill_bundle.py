"""The distillation bundle: everything latent consistency distillation reads, precomputed once.

Distillation never runs the VAE encoder or the text encoder: the training split's VAE
posteriors (mean and std, encoded by the teacher's own VAE with the teacher's latent scale and
shift kept), the token states of every caption (plus the empty caption, the unconditional
branch, and the sample grid's prompts), the style ids, and the teacher's UNet, config and VAE
decoder are written to one folder. A machine with torch, numpy, safetensors and Pillow alone
then trains from it (docs/MODEL.md, "Fast mode").

Layout::

    bundle.json            captions (row 0 is ""), styles, latent config, sources and their sha256
    latents.safetensors    mean float16 [N,C,h,w], std float16 [N,C]; caption_rows, style_ids int64 [N]
    text.safetensors       tokens float16 [T, D] (real tokens only); lengths int64 [U]
    teacher/               config.json, unet_ema.safetensors, vae_decoder.safetensors (float16)

The bundle must fit a small upload (about 25 MB), hence float16 and two approximations that do
not reach what is learned: the VAE posterior std is kept per image and channel (its mean is
0.002 in latent units, at the smallest training sigma), and the VAE decoder, used only for
the sample sheet, is rounded to float16. Token states are stored without padding: the UNet
masks padded tokens with a -1e4 attention bias, whose softmax weight is exactly 0 in float32,
so their values never reach the output."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from diffusion.data.build import shown_path
from diffusion.nets.config import LatentConfig, ModelConfig, VAEConfig
from diffusion.training.checkpoint import sha256_of

BUNDLE_VERSION = 1


def build_bundle(teacher: Path, dataset: Path, out: Path, extra_prompts: list[str]) -> Path:
    """Encode ``dataset``'s training split with the teacher's VAE and text encoder into ``out``."""
    from diffusion.data.dataset import TRAIN, load_dataset
    from diffusion.training.latents import encode_dataset, load_vae
    from diffusion.training.text_cache import build_text_cache

    teacher, out = Path(teacher), Path(out)
    mc = ModelConfig.from_dict(json.loads((teacher / "config.json").read_text(encoding="utf-8")))
    latent_cfg = LatentConfig.from_dict(mc.latent)
    styles = list(mc.styles)
    ds = load_dataset(dataset)
    train = ds.subset(TRAIN)
    unknown = sorted({str(ds.styles[i]) for i in train.style_ids} - set(styles))
    if unknown:
        raise ValueError(f"{dataset}: styles {unknown} are not among the teacher's styles {styles}")
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    vae = load_vae(teacher, VAEConfig.from_dict(mc.vae))
    mean, logvar, _ = encode_dataset(vae, train.images, work / "latents.npz", latent_cfg)
    captions = [str(c) for c in train.captions]
    states, mask, row_of = build_text_cache(captions + list(extra_prompts), work / "text_cache.npz",
                                            int(mc.text["max_length"]))
    lengths = mask.sum(axis=1).astype(np.int64)
    if not np.array_equal(mask, (np.arange(mask.shape[1])[None, :] < lengths[:, None]).astype(mask.dtype)):
        raise ValueError("text masks are not prefix masks: padded tokens must follow the real ones")
    tokens = np.concatenate([states[u, :n] for u, n in enumerate(lengths)])
    std = np.exp(0.5 * logvar).mean(axis=(2, 3))
    save_file({"mean": torch.from_numpy(mean).half(), "std": torch.from_numpy(std).half(),
               "caption_rows": torch.tensor([row_of[c] for c in captions], dtype=torch.int64),
               "style_ids": torch.tensor([styles.index(ds.styles[i]) for i in train.style_ids], dtype=torch.int64)},
              str(out / "latents.safetensors"))
    save_file({"tokens": torch.from_numpy(tokens).half(), "lengths": torch.from_numpy(lengths)},
              str(out / "text.safetensors"))
    tdir = out / "teacher"
    tdir.mkdir(exist_ok=True)
    shutil.copyfile(teacher / "config.json", tdir / "config.json")
    shutil.copyfile(teacher / "unet_ema.safetensors", tdir / "unet_ema.safetensors")
    vae_sd = load_file(str(teacher / "vae_ema.safetensors"))
    save_file({k: v.half().contiguous() for k, v in vae_sd.items() if k.startswith("decoder.")},
              str(tdir / "vae_decoder.safetensors"))
    unique = [""] + sorted(set(captions + list(extra_prompts)) - {""})
    meta = {"version": BUNDLE_VERSION, "captions": unique, "max_length": int(mask.shape[1]), "styles": styles,
            "latent": latent_cfg.to_dict(), "train_images": len(captions),
            "sources": {"teacher": str(teacher), "dataset": shown_path(dataset),
                        "teacher_unet_sha256": sha256_of(teacher / "unet_ema.safetensors"),
                        "teacher_vae_sha256": sha256_of(teacher / "vae_ema.safetensors"),
                        "dataset_sha256": sha256_of(dataset)}}
    (out / "bundle.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(work)
    return out


@dataclass
class Bundle:
    """A loaded bundle, float32 tensors on the CPU."""
    mean: torch.Tensor          # [N,C,h,w] VAE posterior mean
    std: torch.Tensor           # [N,C,1,1] VAE posterior std (per image and channel)
    caption_rows: torch.Tensor  # [N] row of each image's caption in ``states``
    style_ids: torch.Tensor     # [N]
    states: torch.Tensor        # [U,L,D] token states, zero past each caption's length
    mask: torch.Tensor          # [U,L] 1 for real tokens
    captions: list[str]
    styles: list[str]
    latent: LatentConfig
    meta: dict

    def row(self, caption: str) -> int:
        try:
            return self.captions.index(caption)
        except ValueError:
            raise ValueError(f"caption {caption!r} is not in the bundle's text cache") from None


def load_bundle(folder: Path) -> Bundle:
    folder = Path(folder)
    meta_path = folder / "bundle.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no bundle.json (build one with `atelier train distill-data`)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("version") != BUNDLE_VERSION:
        raise ValueError(f"{folder}: bundle version {meta.get('version')}, expected {BUNDLE_VERSION}")
    lat = load_file(str(folder / "latents.safetensors"))
    txt = load_file(str(folder / "text.safetensors"))
    lengths, tokens = txt["lengths"], txt["tokens"].float()
    n_rows, max_len = len(meta["captions"]), int(meta["max_length"])
    states = torch.zeros(n_rows, max_len, tokens.shape[1])
    mask = torch.zeros(n_rows, max_len)
    offsets = torch.cumsum(lengths, 0) - lengths
    for u in range(n_rows):
        n, o = int(lengths[u]), int(offsets[u])
        states[u, :n] = tokens[o:o + n]
        mask[u, :n] = 1.0
    return Bundle(lat["mean"].float(), lat["std"].float()[:, :, None, None], lat["caption_rows"], lat["style_ids"],
                  states, mask, list(meta["captions"]), list(meta["styles"]), LatentConfig.from_dict(meta["latent"]),
                  meta)
