"""Reader of the model repository: `<root>/<name>/<version>/manifest.json` plus its files.

Safe loading (docs/ARCHITECTURE.md, Contracts: model repository): a version's folder may
hold only `manifest.json` and the files the manifest lists, and a file is handed out only
after its bytes hash to the manifest's sha256. Refused, each with an error naming the file and the reason:

* a file whose sha256 differs from the manifest (tampered, truncated, half-copied);
* a file or folder the manifest does not list, and symbolic links (could point anywhere);
* ONNX external data whose `location` leaves the version folder, or is not listed;
* pickled checkpoints (.pt/.pth/.ckpt/.bin/.pkl, or pickle/torch-zip bytes under any name):
  unpickling runs arbitrary code, so they are never loaded, listed or not.

Numpy-free: workers and the gateway import this; the ONNX parse needs no `onnx` package.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from repository.manifest import MANIFEST_NAME, Manifest, ManifestError
from repository.onnx_external import OnnxParseError, external_refs

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
# Pickle protocols 2-5 start with PROTO (0x80) and the protocol byte; torch.save writes a zip.
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CHUNK = 1 << 20


class ModelRepositoryError(Exception):
    """A model or version does not exist, or its manifest cannot be read."""


class UnsafeModelError(ModelRepositoryError):
    """A file was refused by safe loading; the message names the file and the reason."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_name(kind: str, value: str) -> str:
    # Names come from requests: never let one become a path outside the repository.
    if not _NAME.match(value) or ".." in value:
        raise ModelRepositoryError(f"invalid {kind} {value!r}: use letters, digits, '.', '_' or '-'")
    return value


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


@dataclass(frozen=True)
class VerifiedOnnx:
    """An ONNX file whose bytes (and external-data files) matched the manifest."""

    name: str
    path: Path
    data: bytes                      # the verified bytes: hand these, not the path, to ORT
    external_files: tuple[str, ...]  # verified external-data files beside it

    @property
    def has_external_data(self) -> bool:
        return bool(self.external_files)


def _identity(path: Path) -> tuple[int, int, int, int]:
    # A file replaced (new inode) or written (mtime, and ctime, which no one can set back) since.
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class ModelVersion:
    """One verified version folder. Thread-safe; hashes each file once while it stays unchanged."""

    def __init__(self, path: Path, manifest: Manifest, manifest_sha256: str):
        self.path = path
        self.manifest = manifest
        self.manifest_sha256 = manifest_sha256   # covers every file's hash: the model's identity
        # name -> the file's identity when its bytes last matched: a check remembered from
        # verify() vouches for external data ONNX Runtime reads by path, never for a swapped file.
        self._verified: dict[str, tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()
        self._check_folder()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def _refuse(self, file: str, reason: str) -> UnsafeModelError:
        return UnsafeModelError(f"refusing {self.path / file}: {reason}")

    def _check_folder(self) -> None:
        for entry in sorted(self.path.iterdir()):
            name = entry.name
            if name == MANIFEST_NAME:
                continue
            if entry.is_symlink():
                raise self._refuse(name, "symbolic links are not loaded")
            if name.lower().endswith(PICKLE_SUFFIXES):
                raise self._refuse(name, "pickled checkpoint; only ONNX, safetensors and JSON are loaded")
            if entry.is_dir():
                raise self._refuse(name, "folder not listed in the manifest")
            if name not in self.manifest.files:
                raise self._refuse(name, "file not listed in the manifest")
        for name in self.manifest.files:
            if name.lower().endswith(PICKLE_SUFFIXES):
                raise self._refuse(name, "pickled checkpoint; only ONNX, safetensors and JSON are loaded")
            if not (self.path / name).is_file():
                raise self._refuse(name, "listed in the manifest but missing")

    def _verify(self, name: str, data: bytes | None = None) -> None:
        entry = self.manifest.files.get(name)
        if entry is None:
            raise self._refuse(name, "file not listed in the manifest")
        path = self.path / name
        if path.is_symlink() or not path.is_file():
            raise self._refuse(name, "missing or not a regular file")
        identity = _identity(path)  # taken before hashing: a change while hashing is seen next time
        with self._lock:
            if data is None and self._verified.get(name) == identity:
                return
        head = data[:4] if data is not None else path.open("rb").read(4)
        if head.startswith(_PICKLE_MAGIC):
            raise self._refuse(name, "its bytes are a pickle or torch checkpoint; never unpickled")
        actual = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)
        if actual != entry.sha256:
            raise self._refuse(name, f"sha256 {actual} differs from the manifest's {entry.sha256}")
        if data is None:  # bytes handed in may predate `identity`: only a hashed file is remembered
            with self._lock:
                self._verified[name] = identity

    def verify(self) -> None:
        """Hash every listed file now (a worker calls this once at load)."""
        for name in self.manifest.files:
            self._verify(name)

    def read_bytes(self, name: str) -> bytes:
        """The bytes of a listed file, verified against the manifest."""
        path = self.path / name
        if name not in self.manifest.files:
            raise self._refuse(name, "file not listed in the manifest")
        data = path.read_bytes()
        self._verify(name, data)
        return data

    def onnx(self, role: str, variant: str = "default") -> VerifiedOnnx:
        """The ONNX file playing `role` in `variant`, with its external data checked."""
        return self.onnx_file(self.manifest.file_for(role, variant))

    def onnx_file(self, name: str) -> VerifiedOnnx:
        """A listed ONNX file by name, with its external data checked."""
        data = self.read_bytes(name)
        try:
            refs = external_refs(data)
        except OnnxParseError as exc:
            raise self._refuse(name, f"not a valid ONNX file ({exc})") from None
        externals: list[str] = []
        root = self.path.resolve()
        for ref in refs:
            where = f"external data {ref.location!r} of tensor {ref.tensor!r}"
            loc = PurePosixPath(ref.location.replace("\\", "/"))
            target = (self.path / ref.location).resolve()
            if (not ref.location or loc.is_absolute() or ".." in loc.parts or len(loc.parts) != 1
                    or target.parent != root):
                raise self._refuse(name, f"{where} points outside the model folder")
            if loc.name not in self.manifest.files:
                raise self._refuse(name, f"{where} is not listed in the manifest")
            self._verify(loc.name)
            size = self.manifest.files[loc.name].bytes
            if ref.offset < 0 or ref.offset + (ref.length or 0) > size:
                raise self._refuse(name, f"{where} reaches past the end of that file")
            if loc.name not in externals:
                externals.append(loc.name)
        return VerifiedOnnx(name, self.path / name, data, tuple(externals))

    def text(self, role: str, variant: str = "default") -> str:
        return self.read_bytes(self.manifest.file_for(role, variant)).decode("utf-8")


class ModelRepository:
    """`root/<name>/<version>/`; versions sort numerically, the highest is the latest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and _NAME.match(p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        folder = self.root / _check_name("model name", name)
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if (p / MANIFEST_NAME).is_file() and _NAME.match(p.name)]
        return sorted(found, key=_version_key)

    def latest(self, name: str) -> str:
        versions = self.versions(name)
        if not versions:
            raise ModelRepositoryError(f"no model {name!r} in {self.root}")
        return versions[-1]

    def manifest(self, name: str, version: str | None = None) -> Manifest:
        return self.open(name, version).manifest

    def open(self, name: str, version: str | None = None) -> ModelVersion:
        """The version's manifest, checked against its folder (file hashes are checked as
        files are read, or all at once by `ModelVersion.verify()`)."""
        _check_name("model name", name)
        version = self.latest(name) if version is None else _check_name("version", str(version))
        folder = self.root / name / version
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise ModelRepositoryError(f"no model {name!r} version {version!r} in {self.root}")
        if path.is_symlink():
            raise UnsafeModelError(f"refusing {path}: symbolic links are not loaded")
        raw = path.read_bytes()
        try:
            manifest = Manifest.from_json(raw)
        except ManifestError as exc:
            raise ModelRepositoryError(f"{path}: {exc}") from None
        if manifest.name != name or manifest.version != version:
            raise ModelRepositoryError(
                f"{path} describes {manifest.name}/{manifest.version}, not {name}/{version}"
            )
        return ModelVersion(folder, manifest, hashlib.sha256(raw).hexdigest())
