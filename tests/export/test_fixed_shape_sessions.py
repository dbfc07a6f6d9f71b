"""The worker runtime's fixed-shape UNet sessions (services/worker/onnx_runtime.STATIC_BATCHES)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.tiny_models import atelier_checkpoint
from export.pipeline import ExportOptions, export_model
from services.common.settings import Settings
from services.worker.onnx_runtime import STATIC_BATCHES, load_runtime

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixed")
    export_model(atelier_checkpoint(root / "ckpt"), ExportOptions(name="tiny", version="1", out=root / "models",
                                                                  optimize=True))
    return load_runtime(Settings(model_repository=root / "models", execution_providers="cpu"), "tiny", "1")


def _fixed_keys(runtime) -> set:
    return {key for key in runtime._sessions if key[0] == "unet" and key[2]}


def test_small_batches_at_the_default_size_run_fixed_shape_sessions_with_the_same_numbers(runtime) -> None:
    # warm-up made them, so no job waits for one
    assert {dict(key[2])["batch"] for key in _fixed_keys(runtime)} == set(STATIC_BATCHES)
    dynamic = runtime._session("unet")
    rng = np.random.default_rng(0)
    for batch in (*STATIC_BATCHES, 3):
        x = rng.standard_normal((batch, 4, 4, 4)).astype(np.float32)
        sigma = np.geomspace(0.1, 10.0, batch)
        cond = runtime.encode_text(["a red heart"] * batch, ["noto"] * batch)
        feeds = {"sample": x, "sigma": sigma.astype(np.float32), **cond}
        expected = dynamic.run(None, feeds)[0]
        np.testing.assert_allclose(runtime.denoise(x, sigma, cond), expected, rtol=0, atol=1e-5)
    assert len(_fixed_keys(runtime)) == len(STATIC_BATCHES)   # batch 3 stayed on the dynamic session


def test_other_sizes_stay_on_the_dynamic_session(runtime) -> None:
    before = set(runtime._sessions)
    x = np.zeros((1, 4, 8, 8), np.float32)   # twice the default latent size
    out = runtime.denoise(x, np.ones(1), runtime.encode_text([""], []))
    assert out.shape == x.shape and set(runtime._sessions) == before
