"""The model repository reader (repository/reader.py) hands out the verified bytes of
the file a role and variant name, and every refusal names the file and the reason."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import onnx
import pytest

from export.repository_writer import write_manifest
from repository.manifest import FileEntry, Manifest
from repository.reader import ModelRepository, ModelRepositoryError, UnsafeModelError
from tests.export.test_model_repository import _tiny_onnx

TOKENIZER = '{"vocab": "café ☕"}'
TOKENIZER_FP16 = '{"vocab": "thé 🍵"}'


def write_version(root: Path, version: str = "1") -> Path:
    """unet.onnx with external data, and an fp16 variant of the unet and the tokenizer."""
    folder = root / "toy" / version
    folder.mkdir(parents=True)
    _tiny_onnx(folder / "unet.onnx", external=True)
    _tiny_onnx(folder / "unet_fp16.onnx", external=False)
    (folder / "tokenizer.json").write_text(TOKENIZER, encoding="utf-8")
    (folder / "tokenizer_fp16.json").write_text(TOKENIZER_FP16, encoding="utf-8")
    entries = {
        "unet.onnx": FileEntry("0" * 64, 0, "unet"),
        "unet.onnx.data": FileEntry("0" * 64, 0, "external_data"),
        "unet_fp16.onnx": FileEntry("0" * 64, 0, "unet", variant="fp16"),
        "tokenizer.json": FileEntry("0" * 64, 0, "tokenizer"),
        "tokenizer_fp16.json": FileEntry("0" * 64, 0, "tokenizer", variant="fp16"),
    }
    manifest = Manifest(name="toy", version=version,
                        components={"unet": "unet.onnx", "tokenizer": "tokenizer.json"},
                        variants={"fp16": {"unet": "unet_fp16.onnx", "tokenizer": "tokenizer_fp16.json"}})
    write_manifest(folder, manifest, entries)
    return folder


def test_each_role_and_variant_reads_its_own_verified_file(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    version = ModelRepository(tmp_path).open("toy")
    unet = version.onnx("unet")
    assert (unet.name, unet.path, unet.data) == ("unet.onnx", folder / "unet.onnx", (folder / "unet.onnx").read_bytes())
    assert unet.external_files == ("unet.onnx.data",)
    fp16 = version.onnx("unet", "fp16")
    assert (fp16.name, fp16.data) == ("unet_fp16.onnx", (folder / "unet_fp16.onnx").read_bytes())
    assert version.text("tokenizer") == TOKENIZER
    assert version.text("tokenizer", "fp16") == TOKENIZER_FP16
    assert version.read_bytes("tokenizer.json") == TOKENIZER.encode("utf-8")


def test_the_manifest_of_the_latest_or_of_a_named_version(tmp_path: Path) -> None:
    write_version(tmp_path, "1")
    write_version(tmp_path, "2")
    repo = ModelRepository(tmp_path)
    assert repo.manifest("toy").version == "2"
    assert repo.manifest("toy", "1").version == "1"
    assert repo.manifest("toy", "1").variants["fp16"]["unet"] == "unet_fp16.onnx"


def refusal(folder: Path, file: str, reason: str, then: str = "$") -> str:
    """The whole refusal message (or its start, followed by the pattern `then`)."""
    return "^" + re.escape(f"refusing {folder / file}: {reason}") + then


def test_a_file_the_manifest_does_not_list_is_refused_by_name(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    with pytest.raises(UnsafeModelError, match=refusal(folder, "vocab.txt", "file not listed in the manifest")):
        ModelRepository(tmp_path).open("toy").read_bytes("vocab.txt")


def test_a_listed_file_that_is_not_onnx_is_refused_by_name(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    version = ModelRepository(tmp_path).open("toy")
    with pytest.raises(UnsafeModelError, match=refusal(folder, "tokenizer.json", "not a valid ONNX file", then=r" \(")):
        version.onnx_file("tokenizer.json")


def point_external_data(folder: Path, **fields: str) -> None:
    """Rewrite unet.onnx's external-data reference, then re-stamp the hashes (only the reference is wrong)."""
    model = onnx.load(folder / "unet.onnx", load_external_data=False)
    entries = model.graph.initializer[0].external_data
    for key, value in fields.items():
        found = [e for e in entries if e.key == key]
        if found:
            found[0].value = value
        else:
            entries.add(key=key, value=value)
    onnx.save_model(model, folder / "unet.onnx")
    manifest = ModelRepository(folder.parents[1]).open("toy").manifest
    write_manifest(folder, manifest, dict(manifest.files))


@pytest.mark.parametrize("location, why", [
    ("..\\outside.data", "points outside the model folder"),  # a Windows path is a path too
    ("weights.data", "is not listed in the manifest"),
])
def test_external_data_outside_the_folder_or_unlisted_is_refused_by_name(tmp_path: Path, location, why) -> None:
    folder = write_version(tmp_path)
    point_external_data(folder, location=location)
    reason = f"external data {location!r} of tensor 'w' {why}"
    with pytest.raises(UnsafeModelError, match=refusal(folder, "unet.onnx", reason)):
        ModelRepository(tmp_path).open("toy").onnx("unet")


def test_external_data_swapped_for_a_link_after_opening_is_refused_as_outside(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    version = ModelRepository(tmp_path).open("toy")
    outside = tmp_path / "outside.data"
    shutil.copy(folder / "unet.onnx.data", outside)
    (folder / "unet.onnx.data").unlink()
    (folder / "unet.onnx.data").symlink_to(outside)
    reason = "external data 'unet.onnx.data' of tensor 'w' points outside the model folder"
    with pytest.raises(UnsafeModelError, match=refusal(folder, "unet.onnx", reason)):
        version.onnx("unet")


@pytest.mark.parametrize("reach", ["length past the end", "offset plus length past the end"])
def test_external_data_reaching_past_the_end_of_its_file_is_refused(tmp_path: Path, reach: str) -> None:
    folder = write_version(tmp_path)
    size = (folder / "unet.onnx.data").stat().st_size
    if reach == "length past the end":
        point_external_data(folder, offset="0", length=str(size + 1))
    else:
        point_external_data(folder, offset=str(size - 8), length="16")
    reason = "external data 'unet.onnx.data' of tensor 'w' reaches past the end of that file"
    with pytest.raises(UnsafeModelError, match=refusal(folder, "unet.onnx", reason)):
        ModelRepository(tmp_path).open("toy").onnx("unet")


def test_a_reference_that_ends_exactly_at_the_end_of_its_file_is_served(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    size = (folder / "unet.onnx.data").stat().st_size
    point_external_data(folder, offset="16", length=str(size - 16))
    assert ModelRepository(tmp_path).open("toy").onnx("unet").external_files == ("unet.onnx.data",)


def test_a_listed_file_swapped_for_a_link_after_opening_is_refused_on_every_read(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    version = ModelRepository(tmp_path).open("toy")
    version.verify()
    copy = tmp_path / "tokenizer-copy.json"
    shutil.copy(folder / "tokenizer.json", copy)  # the very same bytes, but outside the folder
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to(copy)
    why = refusal(folder, "tokenizer.json", "missing or not a regular file")
    for read in (version.verify, lambda: version.read_bytes("tokenizer.json"), lambda: version.text("tokenizer")):
        with pytest.raises(UnsafeModelError, match=why):
            read()


def test_a_listed_file_deleted_after_opening_is_refused_by_name(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    version = ModelRepository(tmp_path).open("toy")
    (folder / "tokenizer_fp16.json").unlink()
    with pytest.raises(UnsafeModelError, match=refusal(folder, "tokenizer_fp16.json", "missing or not a regular file")):
        version.verify()


def test_pickle_bytes_under_a_listed_name_are_refused_by_name(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    (folder / "tokenizer.json").write_bytes(b"\x80\x04" + b"K\x01." * 4)
    reason = "its bytes are a pickle or torch checkpoint; never unpickled"
    version = ModelRepository(tmp_path).open("toy")
    with pytest.raises(UnsafeModelError, match=refusal(folder, "tokenizer.json", reason)):
        version.read_bytes("tokenizer.json")
    with pytest.raises(UnsafeModelError, match=refusal(folder, "tokenizer.json", reason)):
        version.verify()


def test_an_unknown_model_is_named_with_the_repository(tmp_path: Path) -> None:
    write_version(tmp_path)
    with pytest.raises(ModelRepositoryError, match="^" + re.escape(f"no model 'nope' in {tmp_path}") + "$"):
        ModelRepository(tmp_path).latest("nope")


def test_versions_sort_by_number_then_name_and_only_folders_with_a_manifest_and_a_safe_name_count(
        tmp_path: Path) -> None:
    for version in ("10", "2", "beta", "1"):
        write_version(tmp_path, version)
    (tmp_path / "toy" / "3").mkdir()  # no manifest
    shutil.copytree(tmp_path / "toy" / "2", tmp_path / "toy" / ".hidden")  # a manifest, but no safe name
    (tmp_path / "toy" / "notes.txt").write_text("not a version")
    repo = ModelRepository(tmp_path)
    assert repo.versions("toy") == ["1", "2", "10", "beta"]
    assert repo.latest("toy") == "beta"
    assert repo.versions("nothing-here") == []


def test_models_are_the_safely_named_folders_that_hold_a_version(tmp_path: Path) -> None:
    write_version(tmp_path)
    shutil.copytree(tmp_path / "toy", tmp_path / ".toy-backup")  # versions, but no safe name
    (tmp_path / "empty").mkdir()
    (tmp_path / "readme.md").write_text("a file, not a model")
    assert ModelRepository(tmp_path).models() == ["toy"]
    assert ModelRepository(tmp_path / "missing").models() == []


@pytest.mark.parametrize("name, version, kind, value", [
    ("../toy", None, "model name", "../toy"), ("toy", "../1", "version", "../1"), ("toy", "1 2", "version", "1 2"),
])
def test_a_name_or_version_that_could_leave_the_repository_is_refused_by_its_kind(
        tmp_path: Path, name, version, kind, value) -> None:
    write_version(tmp_path)
    message = f"invalid {kind} {value!r}: use letters, digits, '.', '_' or '-'"
    with pytest.raises(ModelRepositoryError, match="^" + re.escape(message) + "$"):
        ModelRepository(tmp_path).open(name, version)
    if version is None:
        with pytest.raises(ModelRepositoryError, match="^" + re.escape(message) + "$"):
            ModelRepository(tmp_path).versions(name)


def test_each_reason_a_version_cannot_be_opened_is_named_with_its_path(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    repo = ModelRepository(tmp_path)
    with pytest.raises(ModelRepositoryError, match="^" + re.escape(f"no model 'toy' version '7' in {tmp_path}") + "$"):
        repo.open("toy", "7")
    manifest = folder / "manifest.json"
    moved = shutil.copytree(folder, tmp_path / "toy" / "2")
    (moved / "manifest.json").unlink()
    (moved / "manifest.json").symlink_to(manifest)
    with pytest.raises(UnsafeModelError, match="^" + re.escape(
            f"refusing {moved / 'manifest.json'}: symbolic links are not loaded") + "$"):
        repo.open("toy", "2")
    for name, version in (("other", "3"), ("toy", "9")):  # one of the two differs
        shutil.copytree(folder, tmp_path / "toy" / "3", dirs_exist_ok=True)
        raw = (folder / "manifest.json").read_text()
        (tmp_path / "toy" / "3" / "manifest.json").write_text(
            raw.replace('"name": "toy"', f'"name": "{name}"').replace('"version": "1"', f'"version": "{version}"'))
        with pytest.raises(ModelRepositoryError, match="^" + re.escape(
                f"{tmp_path / 'toy' / '3' / 'manifest.json'} describes {name}/{version}, not toy/3") + "$"):
            repo.open("toy", "3")
    (tmp_path / "toy" / "3" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelRepositoryError, match="^" + re.escape(f"{tmp_path / 'toy' / '3' / 'manifest.json'}: ")):
        repo.open("toy", "3")


@pytest.mark.parametrize("entry, reason", [
    ("link.json", "symbolic links are not loaded"),
    ("weights.PT", "pickled checkpoint; only ONNX, safetensors and JSON are loaded"),
    ("extra", "folder not listed in the manifest"),
])
def test_each_thing_in_a_version_folder_the_manifest_does_not_vouch_for_is_refused_by_name(
        tmp_path: Path, entry, reason) -> None:
    folder = write_version(tmp_path)
    if entry == "link.json":
        (folder / entry).symlink_to(folder / "tokenizer.json")
    elif entry == "extra":
        (folder / entry).mkdir()
    else:
        (folder / entry).write_bytes(b"\x80\x04 not really a checkpoint")
    with pytest.raises(UnsafeModelError, match=refusal(folder, entry, reason)):
        ModelRepository(tmp_path).open("toy")


def test_a_name_with_two_dots_in_a_row_is_refused_even_where_its_letters_are_allowed(tmp_path: Path) -> None:
    write_version(tmp_path)
    with pytest.raises(ModelRepositoryError, match="^" + re.escape("invalid model name 'to..y'")):
        ModelRepository(tmp_path).open("to..y")


def test_a_pickled_checkpoint_the_manifest_lists_is_refused_by_name(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    raw = json.loads((folder / "manifest.json").read_text())
    raw["files"]["weights.CKPT"] = dict(raw["files"]["tokenizer.json"])
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(UnsafeModelError, match=refusal(
            folder, "weights.CKPT", "pickled checkpoint; only ONNX, safetensors and JSON are loaded")):
        ModelRepository(tmp_path).open("toy")


def test_a_file_the_manifest_lists_that_is_missing_is_refused_by_name(tmp_path: Path) -> None:
    folder = write_version(tmp_path)
    (folder / "tokenizer_fp16.json").unlink()
    missing = refusal(folder, "tokenizer_fp16.json", "listed in the manifest but missing")
    with pytest.raises(UnsafeModelError, match=missing):
        ModelRepository(tmp_path).open("toy")
