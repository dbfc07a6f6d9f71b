"""`atelier export --reuse-from VERSION_FOLDER`: take the networks a new version shares with a
shipped one (a distilled student's VAE and text encoder are its teacher's) as byte-identical
copies of that version's files instead of exporting them again.

A version folder stays self-contained (docs/MODEL_REPOSITORY.md, "Safe loading": no links, no
paths outside it), so the files are copied; being the same bytes, git stores each blob once and
the repository does not grow by them. Each copied ONNX file is parity-checked against this
source's own torch module like an exported one, so a copy of the wrong network fails the export.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from export.component import Component, Tolerance
from repository.manifest import MANIFEST_NAME, Manifest

REUSABLE_ROLES = ("vae_decoder", "vae_encoder", "text_encoder")


@dataclass(frozen=True)
class ReusedFile:
    file: str
    variant: str
    precision: str
    external: tuple[str, ...]      # its external-data files


class ReuseError(ValueError):
    """The version named by --reuse-from cannot lend a network; the message says why."""


def shipped_version(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ReuseError(f"--reuse-from {folder}: no {MANIFEST_NAME} (name a version folder, e.g. models/NAME/2)")
    return Manifest.from_json(path.read_bytes())


def files_of(manifest: Manifest, role: str, variants: tuple[str, ...]) -> list[ReusedFile]:
    """The role's default file and its twins in ``variants`` (those the version has)."""
    out = []
    for variant in ("default", *variants):
        file = manifest.components.get(role) if variant == "default" else manifest.variants.get(variant, {}).get(role)
        if not file:
            if variant == "default":
                raise ReuseError(f"{manifest.name}/{manifest.version} has no {role}")
            continue
        entry = manifest.files[file]
        external = tuple(sorted(n for n, e in manifest.files.items()
                                if e.role == "external_data" and n.startswith(file + ".data.")))
        out.append(ReusedFile(file, variant, entry.precision, external))
    return out


def copy_checked(folder: Path, into: Path, reused: ReusedFile, component: Component, tolerance: Tolerance,
                 check) -> dict:
    """Copy one file (and its external data) from ``folder`` into ``into``; its parity entry
    against ``component`` (``check`` is export.parity.check)."""
    for name in (reused.file, *reused.external):
        shutil.copyfile(Path(folder) / name, Path(into) / name)
    entry = check(component, Path(into) / reused.file, tolerance)
    return {**entry, "reused_from": str(folder)}


def same_tokenizer(folder: Path, manifest: Manifest, tokenizer_json: str) -> bool:
    """The shipped tokenizer.json says the same as the one this source would write."""
    shipped = (Path(folder) / manifest.components["tokenizer"]).read_text(encoding="utf-8")
    return json.loads(shipped) == json.loads(tokenizer_json)
