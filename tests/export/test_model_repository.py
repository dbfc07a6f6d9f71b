"""Safe loading: the repository reader refuses every file the manifest does not vouch for."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.repository_writer import write_manifest
from repository.manifest import FileEntry, Manifest, ManifestError, ScheduleSpec, UNetSpec
from repository.onnx_external import external_refs
from repository.reader import ModelRepository, ModelRepositoryError, UnsafeModelError


def _tiny_onnx(path: Path, external: bool) -> None:
    """y = x + w, with w stored inside the file or in `<name>.data` beside it."""
    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(1, 4096), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4096])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    if external:
        onnx.save_model(model, path, save_as_external_data=True, location=path.name + ".data",
                        size_threshold=0)
    else:
        onnx.save_model(model, path)


def _version(root: Path, external: bool = True) -> Path:
    folder = root / "toy" / "1"
    folder.mkdir(parents=True)
    _tiny_onnx(folder / "unet.onnx", external)
    (folder / "tokenizer.json").write_text("{}")
    entries = {"unet.onnx": FileEntry("0" * 64, 0, "unet"), "tokenizer.json": FileEntry("0" * 64, 0, "tokenizer")}
    if external:
        entries["unet.onnx.data"] = FileEntry("0" * 64, 0, "external_data")
    manifest = Manifest(name="toy", version="1", components={"unet": "unet.onnx", "tokenizer": "tokenizer.json"})
    write_manifest(folder, manifest, entries)
    return folder


def _rewrite_manifest(folder: Path, edit) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    edit(data)
    (folder / "manifest.json").write_text(json.dumps(data))


def test_reads_back_verified_files(tmp_path: Path) -> None:
    _version(tmp_path)
    repo = ModelRepository(tmp_path)
    assert repo.models() == ["toy"] and repo.versions("toy") == ["1"] and repo.latest("toy") == "1"
    version = repo.open("toy")
    version.verify()
    model = version.onnx("unet")
    assert model.external_files == ("unet.onnx.data",)
    assert len(version.manifest_sha256) == 64


def test_manifest_round_trips() -> None:
    m = Manifest(name="sd", version="3", schedule=ScheduleSpec(kind="discrete", beta_schedule="scaled_linear",
                                                                num_train_timesteps=1000),
                 unet=UNetSpec(prediction="epsilon", time_input="timestep"), styles=("a", "b"),
                 files={"unet.onnx": FileEntry("a" * 64, 3, "unet")}, components={"unet": "unet.onnx"},
                 variants={"fp16": {"unet": "unet.onnx"}}, licenses=({"name": "CC-BY-4.0"},))
    assert Manifest.from_json(m.to_json()) == m
    assert Manifest.from_json(Manifest.from_json(m.to_json()).to_json()).to_json() == m.to_json()


def test_manifest_refuses_unknown_fields_and_schema() -> None:
    text = Manifest(name="a", version="1").to_dict()
    with pytest.raises(ManifestError, match="unknown field"):
        Manifest.from_json(json.dumps({**text, "unet": {**text["unet"], "predicton": "x0"}}))
    with pytest.raises(ManifestError, match="schema_version"):
        Manifest.from_json(json.dumps({**text, "schema_version": 99}))
    with pytest.raises(ManifestError, match="prediction"):
        dataclasses.replace(Manifest(name="a", version="1"), unet=UNetSpec(prediction="flow")).check()


def test_refuses_file_whose_hash_differs(tmp_path: Path) -> None:
    folder = _version(tmp_path)
    data = bytearray((folder / "unet.onnx.data").read_bytes())
    data[100] ^= 1
    (folder / "unet.onnx.data").write_bytes(bytes(data))
    version = ModelRepository(tmp_path).open("toy", "1")
    with pytest.raises(UnsafeModelError, match=r"unet\.onnx\.data: sha256 .* differs"):
        version.onnx("unet")


def test_refuses_tampered_onnx(tmp_path: Path) -> None:
    folder = _version(tmp_path, external=False)
    with open(folder / "unet.onnx", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(UnsafeModelError, match=r"unet\.onnx: sha256"):
        ModelRepository(tmp_path).open("toy").onnx("unet")


def test_refuses_unlisted_file(tmp_path: Path) -> None:
    folder = _version(tmp_path)
    (folder / "extra.onnx").write_bytes(b"x")
    with pytest.raises(UnsafeModelError, match=r"extra\.onnx: file not listed in the manifest"):
        ModelRepository(tmp_path).open("toy")


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin", ".pkl"])
def test_refuses_pickled_checkpoint_even_if_listed(tmp_path: Path, suffix: str) -> None:
    folder = _version(tmp_path)
    name = "weights" + suffix
    (folder / name).write_bytes(pickle.dumps({"w": 1}))

    def add(data):
        data["files"][name] = {"sha256": "0" * 64, "bytes": 1, "role": "unet", "variant": "default",
                               "precision": "fp32"}

    _rewrite_manifest(folder, add)
    with pytest.raises(UnsafeModelError, match=rf"{name}: pickled checkpoint"):
        ModelRepository(tmp_path).open("toy")


def test_refuses_pickle_bytes_under_an_innocent_name(tmp_path: Path) -> None:
    folder = _version(tmp_path, external=False)
    payload = pickle.dumps({"w": 1}, protocol=4)
    (folder / "tokenizer.json").write_bytes(payload)
    _rewrite_manifest(folder, lambda d: d["files"]["tokenizer.json"].update(
        sha256=__import__("hashlib").sha256(payload).hexdigest(), bytes=len(payload)))
    with pytest.raises(UnsafeModelError, match="pickle"):
        ModelRepository(tmp_path).open("toy").text("tokenizer")


@pytest.mark.parametrize("location", ["../../outside.data", "/etc/passwd", "sub/unet.onnx.data"])
def test_refuses_external_data_outside_the_folder(tmp_path: Path, location: str) -> None:
    folder = _version(tmp_path)
    model = onnx.load(folder / "unet.onnx", load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save_model(model, folder / "unet.onnx")
    entries = {"unet.onnx": FileEntry("0" * 64, 0, "unet"), "unet.onnx.data": FileEntry("0" * 64, 0, "external_data"),
               "tokenizer.json": FileEntry("0" * 64, 0, "tokenizer")}
    manifest = ModelRepository(tmp_path).open("toy").manifest
    # Re-stamp the hashes so only the location is wrong (write_manifest's read-back must refuse it
    # only when the ONNX is opened, which it does not do).
    write_manifest(folder, manifest, entries)
    with pytest.raises(UnsafeModelError, match="points outside the model folder"):
        ModelRepository(tmp_path).open("toy").onnx("unet")


def test_refuses_symlink_and_bad_names(tmp_path: Path) -> None:
    folder = _version(tmp_path, external=False)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UnsafeModelError, match="symbolic link"):
        ModelRepository(tmp_path).open("toy")
    with pytest.raises(ModelRepositoryError, match="invalid model name"):
        ModelRepository(tmp_path).open("../toy")


def test_wire_parser_agrees_with_onnx(tmp_path: Path) -> None:
    _tiny_onnx(tmp_path / "m.onnx", external=True)
    refs = external_refs((tmp_path / "m.onnx").read_bytes())
    model = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    expected = {e.key: e.value for e in model.graph.initializer[0].external_data}
    assert [(r.tensor, r.location, r.offset, r.length) for r in refs] == [
        ("w", expected["location"], int(expected.get("offset", 0)), int(expected["length"]))]
    assert external_refs(onnx.load(tmp_path / "m.onnx").SerializeToString()) == []
