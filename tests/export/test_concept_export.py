"""A concept-classifier package through `atelier export` into a version the verifying reader
accepts, and its runtime (services/worker/concept_runtime.py) against PyTorch; the manifest's
`concepts` section refuses what contradicts it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion.nets.concept_net import ConceptNet, ConceptNetConfig
from diffusion.training.concepts import to_input, write_package
from export.pipeline import ExportOptions, export_model
from repository.manifest import ConceptSpec, FileEntry, Manifest, ManifestError
from repository.reader import ModelRepository
from services.common.settings import Settings
from services.worker.concept_runtime import OnnxConceptRuntime
from services.worker.concept_runtime import to_input as runtime_input

CONCEPTS = ("weapons", "alcohol")
THRESHOLDS = {"weapons": 0.4, "alcohol": 0.6}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, ConceptNet]:
    root = tmp_path_factory.mktemp("concepts")
    torch.manual_seed(0)
    net = ConceptNet(ConceptNetConfig(channels=(4, 8), concepts=CONCEPTS)).eval()
    report = {"thresholds": THRESHOLDS, "options": {"max_false_flags": 0.002}, "seconds": 0.0,
              "concepts": {}, "test_flagged_any": {"images": 0, "of": 0}}
    package = write_package(root / "package", net, {**report, "folds": 5}, {"images": 0},
                            [{"style": "noto", "license": "Apache-2.0"}], "test")
    export_model(package, ExportOptions(name="atelier-concepts", version="1", out=root / "models"))
    return root / "models", net


def _images(n: int, side: int = 32) -> np.ndarray:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (n, side, side, 4), dtype=np.uint8)
    rgba[:, :4, :4, 3] = 0  # some transparent pixels
    return rgba


def test_the_version_declares_its_concepts_and_thresholds_and_reads_back_verified(exported):
    models, _ = exported
    opened = ModelRepository(models).open("atelier-concepts", "1")
    opened.verify()
    m = opened.manifest
    assert m.concepts == ConceptSpec(CONCEPTS, (0.4, 0.6), 32)
    assert m.components == {"concept_classifier": "concept_classifier.onnx"}
    assert m.files["concept_classifier.onnx"].role == "concept_classifier"
    assert {lic["license"] for lic in m.licenses} == {"Apache-2.0"}
    assert json.loads((models / "atelier-concepts" / "1" / "parity.json").read_text())


def test_the_runtime_gives_the_networks_probabilities(exported):
    models, net = exported
    runtime = OnnxConceptRuntime(ModelRepository(models).open("atelier-concepts", "1"),
                                 Settings.from_env({}, execution_providers="cpu"))
    rgba = _images(5)
    with torch.no_grad():
        expected = torch.sigmoid(net(torch.from_numpy(runtime_input(rgba, 32)))).numpy()
    assert np.allclose(runtime.probabilities(rgba), expected, atol=1e-5)
    assert runtime.info.concepts == CONCEPTS and runtime.info.thresholds == (0.4, 0.6)


def test_the_runtime_premultiplies_as_training_did_and_box_filters_an_upscaled_image():
    rgba = _images(2)
    # Training reads premultiplied uint8; a served image is straight alpha: the same picture either way.
    premultiplied = rgba.astype(np.float64)
    premultiplied[..., :3] = np.rint(premultiplied[..., :3] * premultiplied[..., 3:] / 255.0)
    assert np.abs(runtime_input(rgba, 32) - to_input(premultiplied.astype(np.uint8)).numpy()).max() <= 1.0 / 127.5
    big = np.repeat(np.repeat(rgba, 4, axis=1), 4, axis=2)  # every pixel a 4x4 block
    assert np.allclose(runtime_input(big, 32), runtime_input(rgba, 32), atol=1e-6)
    assert runtime_input(_images(1, side=48), 32).shape == (1, 4, 32, 32)


def _manifest(**concepts) -> Manifest:
    spec = dataclasses.replace(ConceptSpec(CONCEPTS, (0.4, 0.6), 32), **concepts)
    files = {"c.onnx": FileEntry("a" * 64, 1, "concept_classifier")}
    return Manifest(name="c", version="1", concepts=spec, files=files, components={"concept_classifier": "c.onnx"})


def test_the_manifest_round_trips_and_refuses_contradictions():
    m = _manifest()
    assert Manifest.from_json(m.to_json()) == m
    with pytest.raises(ManifestError, match="one threshold a concept"):
        _manifest(thresholds=(0.4,)).check()
    with pytest.raises(ManifestError, match="strictly between 0 and 1"):
        _manifest(thresholds=(0.4, 1.0)).check()
    with pytest.raises(ManifestError, match="holds only"):
        dataclasses.replace(_manifest(), styles=("noto",)).check()
    plain = Manifest(name="c", version="1", files={"c.onnx": FileEntry("a" * 64, 1, "concept_classifier")},
                     components={"concept_classifier": "c.onnx"})
    with pytest.raises(ManifestError, match="need a `concepts` section"):
        plain.check()
