"""The cascade judged on generated images (diffusion/evaluation/upscale_generated.py), on a tiny
random base model, a tiny random upscaler package, a random domain classifier and the fixture emoji."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.tiny_models import upscaler_package
from diffusion.data.build import build_emoji
from diffusion.evaluation.classifier import ClassifierConfig, DomainClassifier
from diffusion.evaluation.embed import embed
from diffusion.evaluation.evaluate import model_style_ids, prompt_rows
from diffusion.evaluation.pipeline import load_latent_model
from diffusion.evaluation.upscale_eval import low_resolution
from diffusion.evaluation.upscale_generated import (
    evaluate_generated,
    full_resolution_features,
    generated_goals,
    generated_markdown,
)
from diffusion.nets.upscaler_package import load_package
from diffusion.text_to_image import generate
from tests.evaluation.conftest import FIXTURE
from tests.evaluation.tiny_model import fake_text, write_tiny_runs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    prompts = build_emoji(FIXTURE, size=16, validation_fraction=0.2)
    hires = build_emoji(FIXTURE, size=64, validation_fraction=0.2)
    model, _ = load_latent_model(write_tiny_runs(root / "runs", prompts.styles, 16), text=fake_text)
    torch.manual_seed(0)
    config = ClassifierConfig(channels=(8, 16), feature_dim=16, categories=tuple(prompts.categories),
                              styles=tuple(prompts.styles[1:]))
    classifier = DomainClassifier(config).eval()
    package = load_package(upscaler_package(root / "package"))
    report, images = evaluate_generated(package, model, classifier, prompts, hires, sampler="euler", steps=2,
                                        guidance=3.0, seed=5)
    return prompts, hires, model, classifier, package, report, images


def test_the_base_images_are_the_base_evaluations_rows_and_seeds(setup):
    prompts, _, model, _, package, report, images = setup
    rows = prompt_rows(prompts, "validation")
    again = generate(model, rows.captions, model_style_ids(model, prompts, rows.style_ids),
                     np.arange(5, 5 + len(rows), dtype=np.uint64), steps=2, sampler="euler", guidance=3.0)
    assert (images["base"] == again).all() and report["images"] == len(rows) > 0
    shipped = f"diffusion-{package.inference['default_steps']}"
    assert list(report["methods"]) == ["base", shipped, "cnn", "bicubic"] and report["shipped"] == shipped
    for name in (shipped, "cnn", "bicubic"):
        assert images[name].shape == (len(rows), 64, 64, 4) and report["methods"][name]["size"] == 64


def test_adherence_is_of_the_box_downsample_and_fid_of_the_full_size(setup):
    prompts, hires, _, classifier, package, report, images = setup
    shipped = report["shipped"]
    small = low_resolution(images[shipped], 4)
    e = embed(classifier, small)
    rows = prompt_rows(prompts, "validation")
    cats = np.asarray([list(classifier.config.categories).index(rows.categories[c]) for c in rows.category_ids])
    assert report["methods"][shipped]["category_adherence"] == pytest.approx(
        float((e.category_probs.argmax(1) == cats).mean()))
    row = report["methods"][shipped]
    assert np.isfinite(row["fid_vs_train"]) and row["fid_vs_train"] >= 0 and row["fid_vs_held_out"] >= 0
    assert "fid_vs_train" not in report["methods"]["base"]
    assert report["real"]["fid_vs_train"] >= 0 and report["real"]["size"] == 64


def test_full_resolution_features_see_the_image_at_its_own_size(setup):
    _, hires, _, classifier, _, _, _ = setup
    images = hires.images[:3]
    f = full_resolution_features(classifier, images)
    assert f.shape == (3, classifier.config.feature_dim)
    # Not the 32² features the classifier computes on resized input.
    assert not np.allclose(f, embed(classifier, images).features)


def test_goals_and_markdown(setup):
    report = setup[5]
    goals = generated_goals(report)
    assert [g["goal"].split()[0] for g in goals] == ["category", "style"]
    base, shipped = report["methods"]["base"], report["methods"][report["shipped"]]
    assert goals[0]["value"] == pytest.approx(abs(shipped["category_adherence"] - base["category_adherence"]))
    assert goals[0]["met"] == (abs(goals[0]["value"]) <= 0.02)
    assert goals[0]["no_loss"] == (goals[0]["value"] >= -0.02)
    # Paired counts: the change of adherence is (gained - lost) / N.
    assert (goals[0]["gained"] - goals[0]["lost"]) / report["images"] == pytest.approx(goals[0]["value"])
    text = "\n".join(generated_markdown(report, "tiny"))
    assert "## Generated images, upscaled" in text and "| FID at 64² vs the real train split |" in text
    assert "| figure | 16² base |" in text
