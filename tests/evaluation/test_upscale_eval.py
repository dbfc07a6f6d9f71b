"""`atelier eval upscale`: its image-quality figures on known cases, and the command end to end on
a tiny random upscaler package, a random domain classifier and the fixture emoji at 32²."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from atelier_cli.main import main
from bench.tiny_models import upscaler_package
from diffusion.data import save_dataset
from diffusion.data.build import build_emoji
from diffusion.evaluation.classifier import ClassifierConfig, DomainClassifier, save_classifier
from diffusion.evaluation.image_quality import alpha_mae, gaussian_window, over_white, psnr, rgba_psnr, ssim
from diffusion.evaluation.perceptual import perceptual_distance
from diffusion.evaluation.upscale_eval import low_resolution, to_uint8, to_unit
from tests.evaluation.conftest import FIXTURE


def _images(seed: int, n: int = 2, size: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, size, size, 1))
    rgb = np.minimum(rng.integers(0, 256, (n, size, size, 3)), a)
    return np.concatenate([rgb, a], axis=-1).astype(np.uint8)


def _ssim_by_windows(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004, eq. 13, window by window (the definition, written out)."""
    w = np.outer(gaussian_window(), gaussian_window())
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[-1]):
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                a, b = x[i:i + 11, j:j + 11, c], y[i:i + 11, j:j + 11, c]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
                cov = (w * (a - ma) * (b - mb)).sum()
                values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_is_wangs_definition_and_one_for_identical_images():
    a, b = _images(0, 1, 16), _images(1, 1, 16)
    assert ssim(a, a)[0] == pytest.approx(1.0)
    assert ssim(a, b)[0] == pytest.approx(_ssim_by_windows(over_white(a)[0], over_white(b)[0]), abs=1e-10)
    assert ssim(a, b)[0] < 0.5


def test_psnr_alpha_and_composite_on_known_cases():
    a = np.zeros((1, 8, 8, 4), np.uint8)                     # fully transparent: white when composited
    assert over_white(a).min() == 1.0
    b = a.copy()
    b[..., 3] = 51                                          # alpha 0.2 of black: 0.8 over white
    assert psnr(b, a)[0] == pytest.approx(10 * np.log10(1 / 0.2**2))
    assert alpha_mae(b, a)[0] == pytest.approx(0.2)
    assert rgba_psnr(b, a)[0] == pytest.approx(10 * np.log10(1 / (0.2**2 / 4)))
    assert psnr(a, a)[0] == 100.0


def test_perceptual_distance_is_zero_for_identical_and_grows_with_blur():
    torch.manual_seed(0)
    model = DomainClassifier(ClassifierConfig(channels=(8, 16), feature_dim=16, categories=("a",), styles=("b",)))
    sharp = _images(2, 3, 32)
    blurred = to_uint8(np.repeat(np.repeat(to_unit(sharp)[:, :, ::4, ::4], 4, 2), 4, 3))
    half = ((sharp.astype(np.int32) + blurred) // 2).astype(np.uint8)
    d_same = perceptual_distance(model, sharp, sharp)
    d_half, d_blur = perceptual_distance(model, half, sharp), perceptual_distance(model, blurred, sharp)
    assert np.allclose(d_same, 0.0, atol=1e-6)
    assert (d_half < d_blur).all() and (d_blur > 0).all()


def test_the_round_trip_of_a_box_downsampled_image_is_exact():
    hr = np.repeat(np.repeat(_images(3, 2, 8), 4, 1), 4, 2)
    assert (low_resolution(hr, 4) == hr[:, ::4, ::4]).all()


def test_eval_upscale_end_to_end(tmp_path):
    ds = build_emoji(FIXTURE, size=32, validation_fraction=0.2)
    data = save_dataset(ds, tmp_path / "data.npz")
    torch.manual_seed(0)
    clf = save_classifier(DomainClassifier(ClassifierConfig(channels=(8, 16), feature_dim=16,
                                                            categories=tuple(ds.categories),
                                                            styles=tuple(ds.styles[1:]))), tmp_path / "classifier",
                          {"train": {}, "validation": {}})
    package = upscaler_package(tmp_path / "package")
    out = tmp_path / "eval"
    argv = ["eval", "upscale", str(package), "--out", str(out), "--data", str(data), "--classifier", str(clf),
            "--steps", "1", "2", "--aug-levels", "0", "--label", "tiny"]
    assert main(argv) == 0
    report = json.loads((out / "eval.json").read_text())
    assert list(report["methods"]) == ["bicubic", "cnn", "diffusion-1", "diffusion-2"]
    assert report["images"] == int((ds.split == 1).sum()) > 0 and report["input_size"] == 8
    assert report["default_steps"] == 2 and list(report["aug_sweep"]) == ["0"]
    for row in report["methods"].values():
        assert 0 < row["ssim"] <= 1 and row["psnr"] > 5 and row["perceptual"] >= 0
    assert {g["goal"] for g in report["goals"]} >= {"round-trip PSNR >= 38 dB", "SR steps at the shipped default <= 4"}
    assert report["tiling"]["tiles"] > 1
    text = (out / "EVAL.md").read_text()
    assert "# Evaluation of the upscaler tiny" in text and "| diffusion-2 |" in text
    assert (out / "contact_sheet.png").stat().st_size > 0
