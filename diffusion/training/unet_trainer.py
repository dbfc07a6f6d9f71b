"""Train the text- and style-conditioned latent UNet with the EDM objective (Karras et al. 2022):
ln(sigma) ~ N(P_mean, P_std^2), loss = lambda(sigma) ||D(z + n; sigma) - z||^2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffusion.data.dataset import TRAIN, load_dataset
from diffusion.data.images import grid
from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
from diffusion.nets.edm import EDMDenoiser, edm_loss_weight, sample_training_sigma
from diffusion.nets.unet import UNet
from diffusion.text_to_image import generate
from diffusion.training.checkpoint import save_weights
from diffusion.training.common import Optimization, TrainConfig, autocast, configure_torch
from diffusion.training.latent_model import TorchLatentModel
from diffusion.training.latents import encode_dataset, load_vae
from diffusion.training.loop import train_loop
from diffusion.training.text_cache import build_text_cache

# The prompts of the training sample grid (rows), each shown in every style (columns).
GRID_PROMPTS = ["grinning face", "red apple", "cat face", "rocket", "pizza", "ghost", "red heart", "japan flag",
                "dog face", "sun", "birthday cake", "soccer ball"]


@dataclass
class CondDropout:
    """Classifier-free guidance training (Ho & Salimans 2022): p_both drops text and style
    together (the unconditional branch used at sampling); p_text / p_style drop one alone, so
    'any style' (style 0 with a prompt) and style-only prompts are also learned."""
    p_both: float = 0.10
    p_text: float = 0.05
    p_style: float = 0.05

    def masks(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        drop_text = u < self.p_both + self.p_text
        drop_style = (u < self.p_both) | ((u >= self.p_both + self.p_text)
                                          & (u < self.p_both + self.p_text + self.p_style))
        return drop_text, drop_style


class Conditioning:
    """Per-example conditioning tensors from the caption cache."""

    def __init__(self, states: np.ndarray, mask: np.ndarray, rows: np.ndarray, styles: np.ndarray):
        self.states = torch.from_numpy(np.ascontiguousarray(states)).float()
        self.mask = torch.from_numpy(np.ascontiguousarray(mask)).float()
        self.rows = torch.from_numpy(rows.astype(np.int64))
        self.styles = torch.from_numpy(styles.astype(np.int64))

    def batch(self, idx: torch.Tensor, drop_text: torch.Tensor, drop_style: torch.Tensor):
        rows = torch.where(drop_text, torch.zeros_like(idx), self.rows[idx])  # row 0 is ""
        style = torch.where(drop_style, torch.zeros_like(idx), self.styles[idx])
        return self.states[rows], self.mask[rows], style


def build_denoiser(unet_cfg: UNetConfig, edm_cfg: EDMConfig, seed: int = 0) -> EDMDenoiser:
    torch.manual_seed(seed)
    return EDMDenoiser(UNet(unet_cfg), edm_cfg)


# The training grid draws like a served job: Heun's method (EDM Algorithm 1) over 18 Karras steps.
GRID_SAMPLER, GRID_STEPS, GRID_GUIDANCE = "heun", 18, 3.0


def sample_grid(model: TorchLatentModel, styles: list[int], seed: int = 0) -> np.ndarray:
    """Every prompt of GRID_PROMPTS in every style -> premultiplied RGBA uint8 [P*S, H, W, 4],
    prompt-major.

    It samples through the numpy stack that evaluation and serving use
    (:func:`diffusion.text_to_image.generate`), and prompt p draws with seed ``seed + p`` in
    every style, so a cell of the grid is the image a served job with that prompt, style and
    seed makes (up to the engine's arithmetic)."""
    n_p, n_s = len(GRID_PROMPTS), len(styles)
    captions = [p for p in GRID_PROMPTS for _ in styles]
    seeds = [seed + p for p in range(n_p) for _ in styles]
    return generate(model, captions, list(styles) * n_p, seeds, steps=GRID_STEPS, sampler=GRID_SAMPLER,
                    guidance=GRID_GUIDANCE, batch_size=n_p * n_s)


def train_unet(dataset: Path, vae_run: Path, run_dir: Path, unet_cfg: UNetConfig, cfg: TrainConfig,
               edm_cfg: EDMConfig | None = None, text_cfg: TextConfig | None = None,
               dropout: CondDropout | None = None, progress=None, resume: bool = True,
               stop_at: int | None = None, init: dict | None = None, vae_cfg: VAEConfig | None = None,
               latent_cfg: LatentConfig | None = None, styles: list[str] | None = None) -> dict:
    """Train from scratch, or (fine-tuning) from ``init`` UNet weights with a shipped model's VAE
    (``vae_run`` folder + ``vae_cfg``), latent normalisation ``latent_cfg`` and style list ``styles``."""
    device = configure_torch(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    edm_cfg, text_cfg, dropout = edm_cfg or EDMConfig(), text_cfg or TextConfig(), dropout or CondDropout()
    data, vae = _latent_data(dataset, vae_run, vae_cfg, run_dir, text_cfg, latent_cfg, styles)
    unet_cfg.num_styles = max(unet_cfg.num_styles, len(data.styles))
    model_cfg = ModelConfig(vae=vae.config.to_dict(), unet=unet_cfg.to_dict(), edm=edm_cfg.to_dict(),
                            text=text_cfg.to_dict(), latent=data.latent_cfg.to_dict(), styles=tuple(data.styles))
    model_cfg.save(run_dir / "model_config.json")
    cfg.save(run_dir / "train_config.json")

    denoiser = build_denoiser(unet_cfg, edm_cfg, cfg.seed)
    if init is not None:
        denoiser.net.load_state_dict(init)
    denoiser = denoiser.to(device)
    opt = Optimization(denoiser, cfg)
    loss_fn = _edm_loss(denoiser, data, dropout, edm_cfg, cfg, device)
    sample_fn = _grid_writer(opt, vae, data, unet_cfg, edm_cfg, text_cfg, cfg.seed, run_dir)
    meta = {"kind": "unet", "model": model_cfg.to_dict(), "train": cfg.to_dict(), "dataset": str(dataset),
            "vae_run": str(vae_run)}
    summary = train_loop(opt, cfg, run_dir, loss_fn, meta, sample_fn, progress, resume, stop_at)
    save_weights(run_dir / "unet_ema.safetensors", _ema_denoiser(opt, unet_cfg, edm_cfg).net.state_dict())
    (run_dir / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "losses"},
                                                     indent=2) + "\n", encoding="utf-8")
    return summary


@dataclass
class LatentData:
    """The training split as the UNet sees it: VAE posterior mean and std per image, each image's
    caption and style conditioning, the latent normalisation and the model's style list."""
    mean: torch.Tensor
    std: torch.Tensor
    cond: Conditioning
    style_ids: np.ndarray
    latent_cfg: LatentConfig
    styles: list[str]


def _latent_data(dataset: Path, vae_run: Path, vae_cfg: VAEConfig | None, run_dir: Path, text_cfg: TextConfig,
                 latent_cfg: LatentConfig | None, styles: list[str] | None) -> tuple[LatentData, object]:
    """The training split encoded once (cached in ``run_dir``) by the VAE, which is returned too;
    a dataset style the model lacks is refused before the VAE is loaded."""
    ds = load_dataset(dataset)
    styles = styles or list(ds.styles)
    train = ds.subset(TRAIN)
    unknown = sorted({str(ds.styles[i]) for i in train.style_ids} - set(styles))
    if unknown:
        raise ValueError(f"{dataset}: styles {unknown} are not among the model's styles {styles}")
    style_ids = np.array([styles.index(ds.styles[i]) for i in train.style_ids], dtype=np.int64)
    vae = load_vae(vae_run, vae_cfg)
    mean, logvar, latent_cfg = encode_dataset(vae, train.images, run_dir / "latents.npz", latent_cfg)
    states, mask, row_of = build_text_cache([str(c) for c in train.captions], run_dir / "text_cache.npz",
                                            text_cfg.max_length)
    cond = Conditioning(states, mask, np.array([row_of[str(c)] for c in train.captions]), style_ids)
    data = LatentData(torch.from_numpy(mean), torch.from_numpy(np.exp(0.5 * logvar)), cond, style_ids, latent_cfg,
                      styles)
    return data, vae


def _edm_loss(denoiser: EDMDenoiser, data: LatentData, dropout: CondDropout, edm_cfg: EDMConfig,
              cfg: TrainConfig, device):
    """One batch's EDM loss: a posterior sample of each latent, noised at a training sigma, with
    text and style dropped as ``dropout`` says."""
    latent_cfg = data.latent_cfg

    def loss_fn(step: int, g: torch.Generator):
        b = cfg.batch_size
        idx = torch.randint(len(data.mean), (b,), generator=g)
        eps_z = torch.randn(data.mean[idx].shape, generator=g)
        z = (data.mean[idx] + data.std[idx] * eps_z - latent_cfg.shift) * latent_cfg.scale
        drop_text, drop_style = dropout.masks(torch.rand(b, generator=g))
        ctx, ctx_mask, style = data.cond.batch(idx, drop_text, drop_style)
        sigma = sample_training_sigma(b, edm_cfg, g)
        n = torch.randn(z.shape, generator=g) * sigma[:, None, None, None]
        z, n, sigma = z.to(device), n.to(device), sigma.to(device)
        with autocast(cfg, device):
            d = denoiser(z + n, sigma, ctx.to(device), ctx_mask.to(device), style.to(device))
        w = edm_loss_weight(sigma, edm_cfg.sigma_data)[:, None, None, None]
        loss = (w * (d.float() - z).square()).mean()
        return loss, {}

    return loss_fn


def _ema_denoiser(opt: Optimization, unet_cfg: UNetConfig, edm_cfg: EDMConfig) -> EDMDenoiser:
    ema = build_denoiser(unet_cfg, edm_cfg)
    opt.ema.copy_to(ema)
    return ema


def _grid_writer(opt: Optimization, vae, data: LatentData, unet_cfg: UNetConfig, edm_cfg: EDMConfig,
                 text_cfg: TextConfig, seed: int, run_dir: Path):
    """The training loop's sample step: the EMA weights' grid of GRID_PROMPTS in the dataset's
    styles, saved under ``run_dir/samples``."""
    grid_styles = sorted({int(s) for s in data.style_ids if s > 0}) or [0]
    grid_text = None

    def sample_fn(step: int) -> None:
        nonlocal grid_text
        if grid_text is None:
            from diffusion.nets.text import TextEncoder

            grid_text = TextEncoder(text_cfg.max_length)
        model = TorchLatentModel(_ema_denoiser(opt, unet_cfg, edm_cfg), vae, grid_text, data.latent_cfg, edm_cfg,
                                 tuple(data.styles))
        imgs = sample_grid(model, grid_styles, seed=seed)
        sheet = grid(_regroup(imgs, len(GRID_PROMPTS), len(grid_styles)), cols=len(GRID_PROMPTS), scale=3)
        (run_dir / "samples").mkdir(exist_ok=True)
        sheet.save(run_dir / "samples" / f"samples_{step:06d}.png")
        sheet.save(run_dir / "samples" / "latest.png")
        opt.model.train()

    return sample_fn


def _regroup(images: np.ndarray, n_prompts: int, n_styles: int) -> np.ndarray:
    """[prompt-major] -> [style-major] so each grid row is one style and each column one prompt."""
    return images.reshape(n_prompts, n_styles, *images.shape[1:]).transpose(1, 0, 2, 3, 4).reshape(
        -1, *images.shape[1:])
