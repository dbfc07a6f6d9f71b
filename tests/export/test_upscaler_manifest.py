"""The manifest's `upscaler` section: round trip, its roles, and what an upscaler version may not hold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from diffusion.upscale import UpscaleParams
from export.repository_writer import write_manifest
from repository.manifest import FileEntry, Manifest, ManifestError, UpscalerSpec
from repository.reader import ModelRepository, ModelRepositoryError

HASH = "a" * 64
SPEC = UpscalerSpec(factor=4, sigma_min=0.002, sigma_max=1.0, sigma_data=0.12, rho=7.0, aug_level=0.05,
                    default_steps=4, size_multiple=8, max_input_side=512, tile=64, tile_overlap=16)


def upscaler_manifest(**changes) -> Manifest:
    files = {"upscaler.onnx": FileEntry(HASH, 3, "upscaler"), "upscaler_fast.onnx": FileEntry(HASH, 3, "upscaler_fast"),
             "upscaler.opt.onnx": FileEntry(HASH, 3, "upscaler", "optimized")}
    m = Manifest(name="atelier-upscale", version="1", upscaler=SPEC, files=files,
                 components={"upscaler": "upscaler.onnx", "upscaler_fast": "upscaler_fast.onnx"},
                 variants={"optimized": {"upscaler": "upscaler.opt.onnx"}})
    return dataclasses.replace(m, **changes)


def test_round_trips_and_feeds_the_sampler() -> None:
    m = upscaler_manifest()
    m.check()
    again = Manifest.from_json(m.to_json())
    assert again == m and again.upscaler == SPEC
    assert again.file_for("upscaler", "optimized") == "upscaler.opt.onnx"
    assert again.file_for("upscaler_fast", "optimized") == "upscaler_fast.onnx"
    params = UpscaleParams.from_spec(again.upscaler)
    assert (params.tile, params.tile_overlap, params.aug_level, params.size_multiple) == (64, 16, 0.05, 8)


def test_a_base_manifest_has_no_upscaler_section() -> None:
    data = json.loads(Manifest(name="a", version="1").to_json())
    assert data["upscaler"] is None
    del data["upscaler"]  # manifests written before the section existed
    assert Manifest.from_json(json.dumps(data)).upscaler is None


@pytest.mark.parametrize(("changes", "message"), [
    ({"components": {"upscaler": "upscaler.onnx", "unet": "upscaler.onnx"}}, r"holds no \['unet'\]"),
    ({"components": {"upscaler": "upscaler.onnx", "text_encoder": "upscaler.onnx", "tokenizer": "upscaler.onnx"}},
     r"holds no \['text_encoder', 'tokenizer'\]"),
    ({"variants": {"fp16": {"vae_decoder": "upscaler.onnx"}}}, r"holds no \['vae_decoder'\]"),
    ({"styles": ("noto",)}, "no styles"),
    ({"components": {"upscaler_fast": "upscaler_fast.onnx"}}, "needs an `upscaler` component"),
    ({"upscaler": dataclasses.replace(SPEC, tile_overlap=32)}, "tile_overlap"),
    ({"upscaler": dataclasses.replace(SPEC, sigma_min=2.0)}, "sigma_min < sigma_max"),
    ({"upscaler": dataclasses.replace(SPEC, tile=33)}, "multiple of size_multiple"),
    ({"upscaler": dataclasses.replace(SPEC, default_steps=0)}, "default_steps"),
    ({"upscaler": None}, r"\['upscaler', 'upscaler_fast'\] need an `upscaler` section"),
    ({"components": {"upscaler": "upscaler.onnx", "upsampler": "upscaler.onnx"}}, "unknown component role"),
])
def test_contradictions_are_named(changes, message) -> None:
    with pytest.raises(ManifestError, match=message):
        upscaler_manifest(**changes).check()


def test_the_reader_names_a_bad_upscaler_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "atelier-upscale" / "1"
    folder.mkdir(parents=True)
    (folder / "upscaler.onnx").write_bytes(b"\x08\x07")
    write_manifest(folder, Manifest(name="atelier-upscale", version="1", upscaler=SPEC,
                                    components={"upscaler": "upscaler.onnx"}),
                   {"upscaler.onnx": FileEntry("0" * 64, 0, "upscaler")})
    repo = ModelRepository(tmp_path)
    assert repo.open("atelier-upscale").manifest.upscaler == SPEC
    data = json.loads((folder / "manifest.json").read_text())
    data["styles"] = ["noto"]
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelRepositoryError, match="an upscaler version has no styles"):
        repo.open("atelier-upscale")
