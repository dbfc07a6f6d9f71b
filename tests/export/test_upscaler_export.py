"""An upscaler package through `atelier export` and back through the worker's runtime.

A tiny random upscaler (bench/tiny_models.py) is exported with --optimize, loaded by
services.worker.onnx_runtime.load_runtime like any version, and sampled by diffusion/upscale.py:
ONNX vs PyTorch, tiles vs the whole image through ONNX Runtime, hash checks, and SR rows of two
jobs stacked in one call by the batching denoiser.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bench.tiny_models import TINY_UPSCALER_INFERENCE, tiny_upscaler_repository, upscaler_package
from diffusion.nets.upscaler import DiffusionUpscaler, FastUpscaler, UpscalerConfig
from diffusion.resample import upsample
from diffusion.upscale import plan_tiles, upscale, upscale_fast
from export.pipeline import ExportError, ExportOptions, export_model
from repository.reader import ModelRepository, UnsafeModelError, sha256_file
from services.common.settings import Settings
from services.worker.batching import BatchingDenoiser
from services.worker.onnx_runtime import load_runtime
from services.worker.runtime import UpscalerRuntime, sr_denoise
from services.worker.upscaler_runtime import OnnxUpscalerRuntime
from tests.diffusion.test_upscale import gradient, sprite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tiny_upscaler_repository(tmp_path_factory.mktemp("upscaler"), "--optimize")


@pytest.fixture(scope="module")
def runtime(models) -> OnnxUpscalerRuntime:
    return load_runtime(Settings(model_repository=models, execution_providers="cpu"), "tiny-upscale", "1")


def test_the_version_holds_hashed_files_parity_and_the_upscaler_section(models) -> None:
    folder = models / "tiny-upscale" / "1"
    assert not (models / "tiny-upscale" / "1.partial").exists()
    manifest = ModelRepository(models).manifest("tiny-upscale")
    assert manifest.components == {"upscaler": "upscaler.onnx", "upscaler_fast": "upscaler_fast.onnx"}
    assert manifest.variants == {"optimized": {"upscaler": "upscaler.opt.onnx",
                                               "upscaler_fast": "upscaler_fast.opt.onnx"}}
    assert "unet" not in manifest.components and manifest.styles == ()
    up = manifest.upscaler
    assert (up.factor, up.size_multiple, up.sigma_data, up.sigma_max) == (4, 8, 0.12, 1.0)
    assert {k: getattr(up, k) for k in TINY_UPSCALER_INFERENCE if k != "image_size"} == {
        k: v for k, v in TINY_UPSCALER_INFERENCE.items() if k != "image_size"}
    for name, entry in manifest.files.items():
        assert sha256_file(folder / name) == entry.sha256
    parity = json.loads((folder / "parity.json").read_text())
    for file in manifest.files:
        if file.endswith(".onnx"):
            assert parity[file]["passed"] and set(parity[file]["cases"]) == {"batch1", "batch4", "size2x"}


def test_the_runtime_matches_pytorch(models, runtime) -> None:
    assert isinstance(runtime, OnnxUpscalerRuntime) and isinstance(runtime, UpscalerRuntime)
    info = runtime.info
    assert (info.name, info.version, info.factor, info.default_steps, info.fast) == ("tiny-upscale", "1", 4, 2, True)
    assert info.sha256 == ModelRepository(models).open("tiny-upscale").manifest_sha256
    assert runtime.variant == "optimized" and runtime.execution_provider == "CPUExecutionProvider"
    package = models.parent / "upscaler-package"
    config = json.loads((package / "config.json").read_text())
    net = DiffusionUpscaler(UpscalerConfig.from_dict(config["upscaler"])).eval()
    net.load_state_dict(load_file(str(package / "upscaler_ema.safetensors")))
    fast = FastUpscaler(UpscalerConfig.from_dict(config["upscaler_fast"])).eval()
    fast.load_state_dict(load_file(str(package / "upscaler_fast_ema.safetensors")))
    g = np.random.default_rng(0)
    x, low = g.normal(0, 0.3, (3, 4, 48, 40)).astype(np.float32), g.uniform(-1, 1, (3, 4, 48, 40)).astype(np.float32)
    sigma, aug = np.array([1.0, 0.1, 0.01], np.float32), np.array([0.05, 0.0, 0.1], np.float32)
    with torch.no_grad():
        ref = net(*(torch.from_numpy(a) for a in (x, sigma, low, aug))).numpy()
        ref_fast = fast(torch.from_numpy(low)).numpy()
    np.testing.assert_allclose(runtime.denoise(x, sigma, low, aug), ref, atol=1e-5)
    np.testing.assert_allclose(runtime.fast(low), ref_fast, atol=1e-5)
    cond = {"low_res": low, "aug_level": aug}
    np.testing.assert_allclose(runtime.denoiser()(x, sigma.astype(np.float64), cond), ref, atol=1e-5)


def test_tiles_through_onnx_runtime_equal_the_whole_image(runtime) -> None:
    params = runtime.info.params
    whole = type(params)(**{**params.__dict__, "tile": 64})
    image = gradient(40, 36)
    tiles = plan_tiles(160, 144, params)
    assert tiles.count == 6 and plan_tiles(160, 144, whole).count == 1
    tiled = upscale(image, runtime.denoise, params, steps=2, seeds=[5])
    single = upscale(image, runtime.denoise, whole, steps=2, seeds=[5])
    # The network's receptive field reaches past the blend's zero-weight margin, so the two are
    # not bit-equal (the overlap decides how close: docs/MODEL_REPOSITORY.md); here under one
    # 8-bit level everywhere, and on average a few hundredths of one.
    diff = np.abs(tiled - single)
    assert diff.max() < 1 / 255 and diff.mean() < 0.05 / 255
    # No seam: across each tile boundary the tiled image steps as the whole one does.
    for axis, starts in ((2, tiles.rows), (3, tiles.cols)):
        for s in starts[1:]:
            cut = [slice(None)] * 4
            cut[axis] = slice(s - 2, s + 2)
            steps_tiled, steps_whole = np.diff(tiled[tuple(cut)], axis=axis), np.diff(single[tuple(cut)], axis=axis)
            assert np.abs(steps_tiled - steps_whole).max() < 1 / 255
    # The one-pass network's tiles are blended once, not refined over steps: a little further apart.
    fast_tiled, fast_single = upscale_fast(image, runtime.fast, params), upscale_fast(image, runtime.fast, whole)
    assert np.abs(fast_tiled - fast_single).max() < 2 / 255


def test_fast_upscale_is_bicubic_plus_the_network(runtime) -> None:
    image = sprite(3, 16, 16)
    up = upsample(image, 4)
    expected = np.clip(up + runtime.fast(up), -1, 1)
    expected[:, :3] = np.minimum(expected[:, :3], expected[:, 3:4])
    np.testing.assert_allclose(upscale_fast(image, runtime.fast, runtime.info.params), expected, atol=1e-6)


def test_sr_rows_of_two_jobs_share_one_onnx_call(runtime) -> None:
    params, images = runtime.info.params, [sprite(1, 16, 16), sprite(2, 16, 16)]
    alone = [upscale(im, runtime.denoise, params, steps=2, seeds=[s]) for im, s in zip(images, (7, 8), strict=True)]
    results: dict[int, np.ndarray] = {}
    with BatchingDenoiser(runtime.denoiser(), max_batch=8, wait_ms=2000, name="tiny-upscale") as batcher:
        both_in = threading.Barrier(2, timeout=30)

        def job(i: int) -> None:
            with batcher.session():
                both_in.wait()
                results[i] = upscale(images[i], sr_denoise(batcher), params, steps=2, seeds=[7 + i])

        threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
    np.testing.assert_allclose(results[0], alone[0], atol=1e-5)
    np.testing.assert_allclose(results[1], alone[1], atol=1e-5)
    assert batcher.stats.calls == 2 and batcher.stats.batch_sizes == {2: 2}


def test_a_tampered_upscaler_is_refused(tmp_path, models) -> None:
    import shutil

    shutil.copytree(models, tmp_path / "models")
    path = tmp_path / "models" / "tiny-upscale" / "1" / "upscaler.opt.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeModelError, match=r"upscaler\.opt\.onnx: sha256"):
        load_runtime(Settings(model_repository=tmp_path / "models", execution_providers="cpu"), "tiny-upscale")


def test_an_upscaler_package_without_the_fast_network_and_with_tiling_asked(tmp_path) -> None:
    package = upscaler_package(tmp_path / "pkg", fast=False)
    with pytest.raises(ExportError, match="tiles large inputs itself"):
        export_model(package, ExportOptions(name="u", version="1", out=tmp_path / "m", tiling=True))
    assert not (tmp_path / "m" / "u" / "1.partial").exists()
    manifest = export_model(package, ExportOptions(name="u", version="1", out=tmp_path / "m"))
    assert manifest.components == {"upscaler": "upscaler.onnx"}
    runtime = load_runtime(Settings(model_repository=tmp_path / "m", execution_providers="cpu"), "u")
    assert not runtime.info.fast
    with pytest.raises(ValueError, match="no fast network"):
        runtime.fast(np.zeros((1, 4, 8, 8), np.float32))
