"""A file swapped after the repository reader checked it is refused on every read path.

A worker calls `verify()` once at load and reads files later (a session per variant is made on
first use), so a check remembered from `verify()` must never vouch for bytes read afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repository.reader import ModelRepository, UnsafeModelError
from tests.export.test_model_repository import _version

READS = {
    "text": lambda v: v.text("tokenizer"),
    "read_bytes": lambda v: v.read_bytes("tokenizer.json"),
    "onnx": lambda v: v.onnx("unet"),
    "onnx_file": lambda v: v.onnx_file("unet.onnx"),
}
FILE_READ_BY = {"text": "tokenizer.json", "read_bytes": "tokenizer.json", "onnx": "unet.onnx",
                "onnx_file": "unet.onnx"}


def swap(path: Path) -> None:
    """Replace the file by one of the same size and different bytes, as a copy tool would."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    tmp = path.with_name(path.name + ".swap")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, path)


@pytest.mark.parametrize("read", list(READS))
def test_a_file_swapped_after_verify_is_refused(tmp_path: Path, read: str) -> None:
    folder = _version(tmp_path, external=False)
    version = ModelRepository(tmp_path).open("toy", "1")
    version.verify()
    READS[read](version)  # verified, and read once
    name = FILE_READ_BY[read]
    swap(folder / name)
    with pytest.raises(UnsafeModelError, match=rf"{name}: sha256 .* differs"):
        READS[read](version)


@pytest.mark.parametrize("read", list(READS))
def test_a_file_tampered_in_place_before_the_first_read_is_refused(tmp_path: Path, read: str) -> None:
    folder = _version(tmp_path, external=False)
    version = ModelRepository(tmp_path).open("toy", "1")
    name = FILE_READ_BY[read]
    with open(folder / name, "r+b") as f:
        f.seek(1)
        byte = f.read(1)
        f.seek(1)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(UnsafeModelError, match=rf"{name}: sha256 .* differs"):
        READS[read](version)
    with pytest.raises(UnsafeModelError, match=rf"{name}: sha256 .* differs"):
        ModelRepository(tmp_path).open("toy", "1").verify()


def test_external_data_swapped_after_verify_is_refused(tmp_path: Path) -> None:
    folder = _version(tmp_path, external=True)
    version = ModelRepository(tmp_path).open("toy", "1")
    version.verify()
    assert version.onnx("unet").external_files == ("unet.onnx.data",)
    swap(folder / "unet.onnx.data")
    with pytest.raises(UnsafeModelError, match=r"unet\.onnx\.data: sha256 .* differs"):
        version.onnx("unet")


@pytest.mark.parametrize("read", list(READS))
def test_a_file_replaced_by_a_symlink_after_verify_is_refused_even_with_the_same_bytes(tmp_path: Path,
                                                                                      read: str) -> None:
    folder = _version(tmp_path, external=False)
    version = ModelRepository(tmp_path).open("toy", "1")
    version.verify()
    name = FILE_READ_BY[read]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes((folder / name).read_bytes())
    (folder / name).unlink()
    (folder / name).symlink_to(elsewhere)
    with pytest.raises(UnsafeModelError, match=rf"{name}: missing or not a regular file"):
        READS[read](version)
