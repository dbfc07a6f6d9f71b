"""Exporting a consistency-distilled student (docs/MODEL.md, "Fast mode"): its UNet is the
consistency function with a `guidance` input, its manifest says so (unet.consistency, the
guidance range, the ramp's end as the schedule's sigma_min, lcm defaults), and with `--reuse-from`
its VAE, text encoder and tokenizer are the teacher's files byte for byte, each parity-checked
against the student's own torch modules, so naming the wrong teacher fails the export."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file, save_file

from atelier_cli.main import main as atelier
from bench.tiny_models import atelier_checkpoint, fast_checkpoint, tiny_fast_repository
from diffusion.nets.config import EDMConfig, UNetConfig
from diffusion.nets.consistency import ConsistencyDenoiser
from diffusion.nets.edm import EDMDenoiser
from diffusion.nets.unet import UNet
from repository.reader import ModelRepository

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast-export")
    return root, tiny_fast_repository(root, "--optimize")


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_manifest_says_fast_and_the_shared_files_are_the_teacher_s_bytes(exported):
    root, models = exported
    fast = ModelRepository(models).open("tiny-fast", "1")
    fast.verify()
    m = fast.manifest
    assert m.unet.consistency and m.unet.guidance_input and tuple(m.unet.guidance_range) == (2.0, 8.0)
    assert m.unet.cond_inputs == ("encoder_hidden_states", "encoder_attention_mask", "style", "guidance")
    assert (m.defaults.sampler, m.defaults.steps, m.schedule.sigma_min) == ("lcm", 4, 0.5)
    teacher = models / "tiny" / "1"
    shared = ["vae_decoder.onnx", "vae_decoder.opt.onnx", "vae_encoder.onnx", "vae_encoder.opt.onnx",
              "text_encoder.onnx", "tokenizer.json"]
    for name in shared:
        assert sha(fast.path / name) == sha(teacher / name), name
    parity = json.loads((fast.path / "parity.json").read_text())
    assert all(parity[n]["reused_from"] == str(teacher) and parity[n]["passed"] for n in shared if n.endswith(".onnx"))
    assert sha(fast.path / "unet.onnx") != sha(teacher / "unet.onnx")


def test_the_unet_file_is_the_consistency_function_with_the_scale_as_an_input(exported):
    root, models = exported
    cfg = json.loads((root / "fast-ckpt" / "config.json").read_text())
    unet = UNet(UNetConfig.from_dict(cfg["unet"]))
    unet.load_state_dict(load_file(str(root / "fast-ckpt" / "unet_ema.safetensors")))
    f = ConsistencyDenoiser(EDMDenoiser(unet, EDMConfig.from_dict(cfg["edm"])), 0.002).eval()
    session = ort.InferenceSession(str(models / "tiny-fast" / "1" / "unet.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(3)
    x, ctx = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 8, 32, generator=g)
    mask, style = torch.ones(2, 8), torch.tensor([1, 2])
    sigma = torch.tensor([0.002, 3.0])
    for w in (2.0, 7.0):
        guidance = torch.full((2,), w)
        with torch.no_grad():
            ref = f(x, sigma, ctx, mask, style, guidance).numpy()
        out = session.run(None, {"sample": x.numpy(), "sigma": sigma.numpy(), "encoder_hidden_states": ctx.numpy(),
                                 "encoder_attention_mask": mask.numpy(), "style": style.numpy(),
                                 "guidance": guidance.numpy()})[0]
        np.testing.assert_allclose(out, ref, atol=1e-4)
        np.testing.assert_allclose(out[0], x[0].numpy(), atol=1e-5)  # f(x, sigma_min) = x: the boundary


def test_reusing_a_version_whose_vae_is_not_the_student_s_fails_the_export(exported, tmp_path, capsys):
    root, models = exported
    other = atelier_checkpoint(tmp_path / "other-teacher")
    student = fast_checkpoint(tmp_path / "student", other)
    vae = load_file(str(student / "vae.safetensors"))
    save_file({k: v * 1.5 if v.is_floating_point() else v for k, v in vae.items()}, str(student / "vae.safetensors"))
    code = atelier(["export", str(student), "--name", "wrong", "--version", "1", "--out", str(tmp_path / "out"),
                    "--reuse-from", str(models / "tiny" / "1")])
    assert code == 1 and "vae_decoder.onnx: ONNX Runtime differs from PyTorch" in capsys.readouterr().err
    assert not (tmp_path / "out" / "wrong" / "1").exists()
