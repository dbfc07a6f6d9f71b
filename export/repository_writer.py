"""Write a version folder's manifest: hash every file, refuse anything the reader would refuse.

Kept free of torch so tests and tools can assemble repositories from ready files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from repository.manifest import MANIFEST_NAME, FileEntry, Manifest
from repository.reader import PICKLE_SUFFIXES, ModelVersion, sha256_file

# Every committed file stays below this (git hosting limits, and a clone stays light).
MAX_FILE_BYTES = 20 * 1000 * 1000


def describe_file(path: Path, role: str, variant: str = "default", precision: str = "fp32") -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size, role=role,
                     variant=variant, precision=precision)


def write_manifest(folder: Path, manifest: Manifest, entries: dict[str, FileEntry],
                   max_file_bytes: int | None = None) -> Manifest:
    """Hash-stamped manifest.json for `folder`. `entries` names every file (roles, variants);
    their hashes are recomputed here, after the last write, so the manifest matches the disk."""
    folder = Path(folder)
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST_NAME)
    unlisted = [n for n in on_disk if n not in entries]
    if unlisted:
        raise ValueError(f"{folder}: files not described for the manifest: {unlisted}")
    files: dict[str, FileEntry] = {}
    for name in on_disk:
        if name.lower().endswith(PICKLE_SUFFIXES):
            raise ValueError(f"{folder / name}: pickled checkpoints are never shipped")
        size = (folder / name).stat().st_size
        if max_file_bytes is not None and size > max_file_bytes:
            raise ValueError(f"{folder / name} is {size / 1e6:.1f} MB, over the {max_file_bytes / 1e6:.0f} MB limit")
        e = entries[name]
        files[name] = describe_file(folder / name, e.role, e.variant, e.precision)
    manifest = dataclasses.replace(manifest, files=files)
    manifest.check()
    tmp = folder / (MANIFEST_NAME + ".tmp")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST_NAME)
    # Read it back the way a worker will: the export fails here rather than in production.
    raw = (folder / MANIFEST_NAME).read_bytes()
    ModelVersion(folder, Manifest.from_json(raw), hashlib.sha256(raw).hexdigest()).verify()
    return manifest
