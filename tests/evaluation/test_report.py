"""`atelier eval` end to end on a tiny random model: report, summary and contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion.evaluation.classifier import ClassifierConfig, DomainClassifier
from diffusion.evaluation.evaluate import evaluate, model_contact_sheet
from diffusion.evaluation.pipeline import load_latent_model
from diffusion.evaluation.report import FIGURES, markdown, write_report
from diffusion.text_to_image import generate
from tests.evaluation.tiny_model import fake_text, write_tiny_runs, write_tiny_shipped


@pytest.fixture(scope="module")
def tiny(fixture_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run = write_tiny_runs(root, fixture_dataset.styles, fixture_dataset.images.shape[1])
    model, meta = load_latent_model(run, text=fake_text)
    cfg = ClassifierConfig(channels=(8, 16), feature_dim=16, categories=tuple(fixture_dataset.categories),
                           styles=tuple(fixture_dataset.styles[1:]))
    return model, meta, DomainClassifier(cfg).eval()


def test_shipped_folder_samples_like_its_checkpoint(tiny, tmp_path):
    model, meta = tiny[0], tiny[1]
    run = Path(meta["checkpoint"]).parents[1]
    shipped, shipped_meta = load_latent_model(write_tiny_shipped(run, tmp_path / "1"), text=fake_text)
    assert shipped_meta["kind"] == "shipped" and shipped_meta["step"] == meta["step"]
    args = (["ghost", "fire"], [1, 2], [3, 4])
    np.testing.assert_array_equal(generate(shipped, *args, steps=3), generate(model, *args, steps=3))


def test_images_depend_on_the_seed_not_the_batch(tiny):
    model = tiny[0]
    captions, styles, seeds = ["cat face, cat"] * 3, [1, 2, 1], [5, 6, 7]
    together = generate(model, captions, styles, seeds, steps=3)
    alone = generate(model, captions[2:], styles[2:], seeds[2:], steps=3)
    assert together.dtype == np.uint8 and together.shape[-1] == 4
    np.testing.assert_array_equal(together[2], alone[0])
    assert not np.array_equal(together[0], together[2])  # same prompt and style, another seed


def test_report_end_to_end(tiny, fixture_dataset, tmp_path):
    model, meta, classifier = tiny
    report, images = evaluate(model, classifier, fixture_dataset, split="train", limit=12, steps=3,
                              kid_subsets=3)
    assert images.shape == (12, *fixture_dataset.images.shape[1:])
    assert set(report["sets"]) == {"generated", "real", "reconstructed"}
    gen, real = report["sets"]["generated"], report["sets"]["real"]
    for key, *_ in FIGURES:
        assert np.isfinite(gen[key]) and np.isfinite(real[key]), key
    assert 0.0 <= gen["category_adherence"] <= 1.0 and 0.0 <= gen["category_chance"] <= 1.0
    report = {"model": {"label": "tiny", "checkpoint": meta["checkpoint"], "step": meta["step"]},
              "classifier": {"path": "random", "validation": {"category": 0.1, "style": 0.3}}, **report}
    paths = write_report(report, tmp_path, baselines={"earlier": report})
    assert json.loads(paths["json"].read_text())["sets"]["generated"]["fid"] == pytest.approx(gen["fid"])
    text = paths["markdown"].read_text()
    assert "| FID (vs train) |" in text and "generated (earlier)" in text and "(floor)" in text
    assert "through the VAE" in text
    assert text == markdown(report, {"earlier": report})


def test_contact_sheet_has_a_cell_per_prompt_style_seed(tiny):
    model = tiny[0]
    prompts, seeds = ["rocket", "ghost"], [0, 1]
    sheet = model_contact_sheet(model, prompts, seeds, steps=2)
    assert isinstance(sheet, Image.Image) and sheet.mode == "RGB"
    styles = [s for s in model.styles if s != "none"]
    h = model.latent.image_size * 3
    assert sheet.height >= len(prompts) * h and sheet.width >= len(styles) * len(seeds) * h
