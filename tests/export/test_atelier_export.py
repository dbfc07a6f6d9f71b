"""Tiny random Atelier nets: export -> parity -> repository read-back -> runtime matches torch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from bench.tiny_models import tiny_repository
from export.sources.atelier import load_atelier
from repository.reader import ModelRepository
from services.common.settings import Settings
from services.worker.onnx_runtime import load_runtime

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("atelier")
    models = tiny_repository(root, "--tiling", "--fp16", "--optimize")
    return root / "ckpt", models


def test_every_file_listed_checked_and_small(exported) -> None:
    _, models = exported
    version = ModelRepository(models).open("tiny", "1")
    version.verify()
    m = version.manifest
    assert set(m.components) == {"unet", "vae_decoder", "vae_encoder", "text_encoder", "tokenizer"}
    assert {"tiling", "fp16", "optimized", "tiling-fp16", "tiling-optimized"} <= set(m.variants)
    parity = json.loads((version.path / "parity.json").read_text())
    for name, entry in m.files.items():
        assert entry.bytes < 20_000_000
        if name.endswith(".onnx"):
            onnx.checker.check_model(str(version.path / name))
            assert parity[name]["passed"] and {"batch1", "batch4"} <= set(parity[name]["cases"])
    assert m.styles == ("none", "noto", "twemoji") and m.licenses and m.provenance["unet_weights"]


@pytest.mark.parametrize("variant", ["default", "optimized", "fp16"])
def test_runtime_matches_torch(exported, variant: str) -> None:
    ckpt, models = exported
    runtime = load_runtime(Settings(model_repository=models), "tiny", "1")
    runtime.variant = variant
    runtime._sessions.clear()
    source = load_atelier(ckpt)
    unet, decoder = source.components[0].module, source.components[1].module
    text = next(c.module for c in source.components if c.role == "text_encoder")

    prompts = ["a red heart", "cat face", "a red heart"]
    cond = runtime.encode_text(prompts, ["noto", "", "twemoji"])
    ids = np.array([e.ids for e in runtime._tokenizer.encode_batch(prompts)])
    with torch.no_grad():
        states = text(torch.from_numpy(ids), torch.from_numpy(cond["encoder_attention_mask"]).long()).numpy()
    np.testing.assert_allclose(cond["encoder_hidden_states"], states, atol=1e-4)
    assert cond["style"].tolist() == [1, 0, 2]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 4, 4)).astype(np.float32) * 2
    sigma = np.array([0.05, 1.0, 20.0])
    x0 = runtime.denoise(x, sigma, cond)
    with torch.no_grad():
        ref = unet(*(torch.from_numpy(a) for a in (x, sigma.astype(np.float32), cond["encoder_hidden_states"],
                                                    cond["encoder_attention_mask"], cond["style"]))).numpy()
    tol = 5e-2 if variant == "fp16" else 1e-4
    np.testing.assert_allclose(x0, ref, atol=tol * max(1.0, np.abs(ref).max()))

    image = runtime.decode(x0)
    with torch.no_grad():
        pixels = decoder(torch.from_numpy(x0 / 0.8 + 0.1)).numpy()
    alpha = np.clip((pixels[:, 3] + 1) / 2, 0, 1) * 255
    assert image.shape == (3, 16, 16, 4) and np.abs(image[..., 3] - alpha).max() <= 2


def test_tiling_networks_wrap_around(exported) -> None:
    _, models = exported
    runtime = load_runtime(Settings(model_repository=models), "tiny", "1")
    z = np.random.default_rng(1).standard_normal((1, 4, 4, 4)).astype(np.float32)
    a = runtime.decode(z, tiling=True)
    b = runtime.decode(np.roll(z, 1, axis=3), tiling=True)
    # A circular decoder commutes with a shift of its input by one latent cell (4 pixels).
    assert np.abs(np.roll(a, 4, axis=2).astype(int) - b.astype(int)).max() <= 1


def test_text_cache_and_encode(exported) -> None:
    _, models = exported
    runtime = load_runtime(Settings(model_repository=models), "tiny", "1")
    first = runtime.encode_text(["green tree"])
    assert "green tree" in runtime._text_cache
    np.testing.assert_array_equal(runtime.encode_text(["green tree"])["encoder_hidden_states"],
                                  first["encoder_hidden_states"])
    images = np.zeros((2, 16, 16, 4), np.uint8)
    assert runtime.encode(images).shape == (2, 4, 4, 4)
    assert runtime.preview(np.zeros((2, 4, 4, 4), np.float32)).shape == (2, 4, 4, 3)
