"""A studio's own Stable Diffusion checkpoint: exported, then served by Atelier's ONNX pipeline
(runtime + numpy sampler), must reproduce the diffusers pipeline's own image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atelier_cli.main import main as atelier
from bench.tiny_models import sd_pipeline
from diffusion.denoisers import bind
from diffusion.guidance import guided
from diffusion.samplers import SAMPLERS
from services.common.settings import Settings
from services.worker.onnx_runtime import load_runtime

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    pipe = sd_pipeline(root / "pipeline")
    assert atelier(["export", str(root / "pipeline"), "--name", "sd-tiny", "--version", "1",
                    "--out", str(root / "models")]) == 0
    runtime = load_runtime(Settings(model_repository=root / "models"), "sd-tiny", "1")
    return pipe, runtime


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_onnx_pipeline_reproduces_diffusers(exported, guidance: float) -> None:
    pipe, runtime = exported
    steps, prompt = 6, "a red heart"
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = pipe(prompt, latents=latents.clone(), num_inference_steps=steps, guidance_scale=guidance,
                        height=16, width=16, output_type="np").images[0]

    sigmas = runtime.sigmas(steps)
    np.testing.assert_allclose(sigmas[:-1], pipe.scheduler.sigmas[:-1].numpy(), rtol=1e-5)
    cond = runtime.encode_text([prompt])
    denoise = (guided(runtime.denoise, cond, runtime.encode_text([""]), guidance) if guidance > 1
               else bind(runtime.denoise, cond))
    x = SAMPLERS["euler"](denoise, latents.numpy().astype(np.float64) * sigmas[0], sigmas)
    image = runtime.decode(x.astype(np.float32))[0]

    assert image.shape == (16, 16, 4) and (image[..., 3] == 255).all()
    want = expected * 255.0
    err = np.abs(image[..., :3].astype(np.float64) - want)
    assert err.max() <= 2.0, f"max pixel error {err.max():.2f} levels"
    assert err.mean() <= 0.5


def test_manifest_describes_the_diffusers_model(exported) -> None:
    _, runtime = exported
    m = runtime.manifest
    assert m.source == "diffusers" and m.unet.prediction == "epsilon" and m.unet.time_input == "timestep"
    assert m.schedule.kind == "discrete" and m.schedule.timestep_spacing == "trailing"
    assert m.latent.scale == pytest.approx(0.18215) and m.image.channels == 3
    assert all(p["min_cosine"] > 0.9999 for p in m.parity.values())
