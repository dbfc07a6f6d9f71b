"""Latent consistency distillation: the guidance embedding leaves the shipped model unchanged and
starts the student as its teacher, the boundary condition holds, the teacher's ODE step is the
project's Euler/Heun samplers, and a resumed run is bit for bit an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from diffusion.nets.config import EDMConfig, LatentConfig, ModelConfig, TextConfig, UNetConfig, VAEConfig
from diffusion.nets.consistency import boundary_skip
from diffusion.nets.unet import UNet
from diffusion.nets.vae import VAE
from diffusion.samplers import sample_euler, sample_heun
from diffusion.training.checkpoint import load_checkpoint
from diffusion.training.common import TrainConfig
from diffusion.training.distill import (
    DistillConfig,
    distill,
    load_teacher,
    student_from_teacher,
    teacher_step,
)
from diffusion.training.distill_bundle import build_bundle, load_bundle
from diffusion.training.unet_trainer import GRID_PROMPTS

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "atelier-emoji" / "2"
TINY_VAE = VAEConfig(channels=(8, 16, 16), groups=8)
TINY_UNET = UNetConfig(channels=(16, 32), num_res_blocks=1, embed_dim=32, heads=2, groups=8)


@pytest.mark.skipif(not (SHIPPED / "unet_ema.safetensors").is_file(), reason="shipped model absent")
def test_shipped_unet_loads_strictly_and_gives_the_outputs_it_gave_before_the_guidance_input():
    cfg = UNetConfig.from_dict(json.loads((SHIPPED / "config.json").read_text())["unet"])
    assert cfg.guidance_embed is False
    net = UNet(cfg)
    net.load_state_dict({k: v.float() for k, v in load_file(str(SHIPPED / "unet_ema.safetensors")).items()})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 24, 384, generator=g)
    mask = torch.ones(2, 24)
    mask[1, 5:] = 0
    with torch.no_grad():
        out = net(x, torch.tensor([-0.5, 0.7]), ctx, mask, torch.tensor([1, 3]))
    # Computed with the UNet as it was before the guidance embedding existed (commit 6140a70).
    np.testing.assert_allclose(out.flatten()[:4].numpy(), [0.1769241989, 0.2233084142, -0.7441037893, 0.6565795541],
                               rtol=1e-5, atol=1e-6)
    assert out.double().abs().sum().item() == pytest.approx(301.75063419761136, rel=1e-5)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A tiny 'shipped' teacher: random weights (every layer perturbed, so no branch is zero)."""
    d = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    net, vae = UNet(TINY_UNET), VAE(TINY_VAE)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_file({k: v.half().contiguous() for k, v in net.state_dict().items()}, str(d / "unet_ema.safetensors"))
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(d / "vae_ema.safetensors"))
    mc = ModelConfig(vae=TINY_VAE.to_dict(), unet=TINY_UNET.to_dict(), edm=EDMConfig().to_dict(),
                     text=TextConfig().to_dict(),
                     latent=LatentConfig(image_size=16, latent_size=4, scale=2.0, shift=0.1).to_dict(),
                     styles=("none", "noto", "twemoji", "fluent-flat"))
    raw = {**mc.to_dict(), "defaults": {"sampler": "euler", "steps": 2, "guidance_scale": 3.0, "schedule": "karras"}}
    (d / "config.json").write_text(json.dumps(raw))
    return d


@pytest.fixture(scope="module")
def bundle_dir(teacher_dir, tiny_dataset, tmp_path_factory) -> Path:
    import diffusion.nets.text as text
    from tests.model.conftest import FakeTextEncoder

    mp = pytest.MonkeyPatch()
    mp.setattr(text, "TextEncoder", FakeTextEncoder)
    try:
        return build_bundle(teacher_dir, tiny_dataset, tmp_path_factory.mktemp("bundle") / "b", GRID_PROMPTS)
    finally:
        mp.undo()


def test_bundle_holds_the_teacher_decoder_and_prefix_masked_token_states(bundle_dir, teacher_dir):
    b = load_bundle(bundle_dir)
    assert b.captions[0] == "" and all(p in b.captions for p in GRID_PROMPTS)
    assert b.states.shape[:2] == b.mask.shape and b.mean.shape[1:] == (4, 4, 4)
    assert int(b.caption_rows.max()) < len(b.captions) and set(b.style_ids.tolist()) <= {1, 2, 3}
    teacher = load_teacher(bundle_dir / "teacher")
    full = VAE(TINY_VAE)
    full.load_state_dict(load_file(str(teacher_dir / "vae_ema.safetensors")))
    z = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        # The bundle's decoder is the teacher's rounded to float16 (the bundle's size budget).
        torch.testing.assert_close(teacher.vae.decode(z), full.decode(z), atol=2e-3, rtol=0)


def test_student_starts_as_the_teachers_conditional_denoiser_and_meets_the_boundary(teacher_dir):
    teacher = load_teacher(teacher_dir)
    student, _, ecfg = student_from_teacher(teacher, seed=0)
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 24, 384, generator=g)
    mask, style = torch.ones(3, 24), torch.tensor([0, 1, 2])
    sigma, w = torch.tensor([0.5, 3.0, 80.0]), torch.tensor([2.0, 5.0, 8.0])
    with torch.no_grad():
        d_teacher = teacher.denoiser(x, sigma, ctx, mask, style)
        # The student's graph has the (zero-initialised) guidance embedding in it, so the CPU's conv
        # kernels may sum in another order: equal to float32 rounding, not bit for bit, on some CPUs.
        exact = dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(student.denoiser(x, sigma, ctx, mask, style, w), d_teacher, **exact)
        skip = boundary_skip(sigma, ecfg.sigma_min).reshape(-1, 1, 1, 1)
        torch.testing.assert_close(student(x, sigma, ctx, mask, style, w), skip * x + (1 - skip) * d_teacher, **exact)
        at_min = torch.full((3,), ecfg.sigma_min)
        assert torch.equal(student(x, at_min, ctx, mask, style, w), x)
    with pytest.raises(ValueError, match="guidance"):
        student.denoiser.net(x, torch.zeros(3), ctx, mask, style)


@pytest.mark.parametrize("solver,sampler", [("euler", sample_euler), ("heun", sample_heun)])
def test_teacher_step_is_the_projects_sampler_step(solver, sampler):
    """One ODE step sigma_t -> sigma_s in torch equals the numpy sampler's first step of [sigma_t, sigma_s, 0]."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 1, 3))
    a = 0.5 * rng.standard_normal((3, 3))

    def x0_np(x, s):
        return np.tanh(x @ a) / (1 + s[:, None, None, None] ** 2) + 0.1 * x

    seen = {}

    def grab(step):
        if step.i == 1:
            seen["x"] = step.x
            raise StopIteration

    with pytest.raises(StopIteration):
        sampler(x0_np, x, np.array([2.0, 0.7, 0.0]), callback=grab)
    x0_t = lambda xt, s: torch.from_numpy(x0_np(xt.numpy(), s.numpy()))  # noqa: E731
    got = teacher_step(solver, x0_t, torch.from_numpy(x), torch.tensor([2.0, 2.0], dtype=torch.float64),
                       torch.tensor([0.7, 0.7], dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), seen["x"], rtol=1e-12, atol=1e-12)


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=4, lr=1e-3, warmup=2, weight_decay=0.0, ema_decay=0.9, threads=1,
                checkpoint_minutes=1e9, tensorboard=False, log_every=1)
    return TrainConfig(**{**base, **kw})


def test_resumed_distillation_is_bit_exact_and_writes_its_outputs(teacher_dir, bundle_dir, tmp_path):
    dcfg = DistillConfig(num_scales=10, skip=2, fit_to_time=False)
    whole = distill(teacher_dir, bundle_dir, tmp_path / "whole", _cfg(), dcfg, log=lambda m: None)
    distill(teacher_dir, bundle_dir, tmp_path / "split", _cfg(), dcfg, stop_at=3, log=lambda m: None)
    split = distill(teacher_dir, bundle_dir, tmp_path / "split", _cfg(), dcfg, log=lambda m: None)
    assert whole["steps"] == split["steps"] == 6 and split["start"] == 3
    a, _ = load_checkpoint(tmp_path / "whole" / "checkpoints" / "latest.safetensors")
    b, _ = load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.safetensors")
    assert set(a) == {"model", "ema", "opt", "target"}
    for group in a:
        for k in a[group]:
            assert torch.equal(a[group][k], b[group][k]), f"{group}.{k}"
    run = tmp_path / "whole"
    for name in ("unet_ema.safetensors", "config.json", "metrics.jsonl", "training_curves.png", "samples.png"):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["unet"]["guidance_embed"] is True and cfg["consistency"]["guidance_range"] == [2.0, 8.0]
    weights = load_file(str(run / "unet_ema.safetensors"))
    assert any(k.startswith("guidance_mlp.") for k in weights)
    assert {v.dtype for v in weights.values()} == {torch.float16}
    # The shipped weights load into a UNet built from the written config.
    UNet(UNetConfig.from_dict(cfg["unet"])).load_state_dict({k: v.float() for k, v in weights.items()})
    # A run that learned moved the guidance embedding off zero.
    assert float(weights["guidance_mlp.2.weight"].float().abs().sum()) > 0


def test_distill_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="solver"):
        DistillConfig(solver="rk4")
    with pytest.raises(ValueError, match="skip"):
        DistillConfig(num_scales=10, skip=10)
    with pytest.raises(ValueError, match="guidance range"):
        DistillConfig(w_min=5.0, w_max=2.0)
