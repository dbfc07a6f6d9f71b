"""The domain classifier: learns the fixture, round-trips through safetensors + JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffusion.data.dataset import TRAIN
from diffusion.evaluation.classifier import CONFIG, WEIGHTS, ClassifierConfig, load_classifier, save_classifier
from diffusion.evaluation.embed import embed
from diffusion.evaluation.train_classifier import TrainOptions, accuracy, config_for, labels, train_classifier
from diffusion.metrics import chance_adherence

TINY = {"channels": (16, 32), "feature_dim": 32, "dropout": 0.0}


@pytest.fixture(scope="module")
def trained(fixture_dataset):
    opts = TrainOptions(epochs=60, batch_size=8, lr=1e-2, seed=0)
    return train_classifier(fixture_dataset, config_for(fixture_dataset, **TINY), opts)


def test_beats_chance_on_the_fixture(trained, fixture_dataset):
    # The fixture holds a dozen subjects: too few to generalise to held-out ones, enough to show
    # that both heads learn their labels.
    model, metrics = trained
    train = fixture_dataset.subset(TRAIN)
    e = embed(model, train.images)
    cats, stys = labels(train, model.config)
    # Chance: the same predictions scored against shuffled labels.
    assert metrics["train"]["category"] > chance_adherence(e.category_probs, cats) + 0.25
    assert metrics["train"]["style"] > chance_adherence(e.style_probs, stys) + 0.25
    assert metrics["train"] == accuracy(model, fixture_dataset, TRAIN)


def test_label_spaces_follow_the_dataset(trained, fixture_dataset):
    cfg = trained[0].config
    assert list(cfg.categories) == fixture_dataset.categories
    assert list(cfg.styles) == fixture_dataset.styles[1:]  # "none" is not a style an image has


def test_save_load_round_trip(trained, fixture_dataset, tmp_path):
    model, metrics = trained
    save_classifier(model, tmp_path, metrics)
    raw = (tmp_path / WEIGHTS).read_bytes()
    assert raw[8:9] == b"{"  # safetensors: u64 header length, then a JSON header; never a pickle
    assert ClassifierConfig.load(tmp_path / CONFIG) == model.config
    assert json.loads((tmp_path / "metrics.json").read_text())["train"] == metrics["train"]
    loaded = load_classifier(tmp_path)
    a, b = embed(model, fixture_dataset.images[:8]), embed(loaded, fixture_dataset.images[:8])
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.category_probs, b.category_probs)


def test_training_is_seeded(fixture_dataset):
    opts = TrainOptions(epochs=2, batch_size=8, seed=3)
    cfg = config_for(fixture_dataset, **TINY)
    a, _ = train_classifier(fixture_dataset, cfg, opts)
    b, _ = train_classifier(fixture_dataset, cfg, opts)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_inputs_of_another_size_are_resized(trained):
    model = trained[0]
    big = np.zeros((2, 64, 64, 4), dtype=np.uint8)
    assert embed(model, big).features.shape == (2, model.config.feature_dim)
