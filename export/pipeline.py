"""SOURCE -> `models/<name>/<version>/`: export, check, parity, variants, manifest.

Everything is written into `<version>.partial/` and renamed into place only after every
file passed `onnx.checker` and parity and the manifest read back through the repository
reader, so a worker never sees a half-exported version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export import parity
from export.component import FP16, OPTIMIZED, Component
from export.fp16 import to_fp16
from export.onnx_files import check_onnx, save_onnx, store_weights_fp16
from export.optimize import optimize_offline
from export.repository_writer import MAX_FILE_BYTES, write_manifest
from export.reuse import REUSABLE_ROLES, ReuseError, copy_checked, files_of, same_tokenizer, shipped_version
from export.source import ConceptSource, Source, UpscalerSource
from export.sources import load_source
from export.torch_export import OPSET, export_component
from repository.manifest import FileEntry, LatentSpec, Manifest, OnnxSpec, UNetSpec

Progress = Callable[[str], None]
# Roles that get fp16 / optimised twins: the per-step and per-image networks. The text
# encoder runs once per prompt (and is cached), so its twins would only add files.
ACCELERATED_ROLES = ("unet", "vae_decoder", "vae_encoder", "upscaler", "upscaler_fast")


@dataclass(frozen=True)
class ExportOptions:
    name: str
    version: str
    out: Path
    tiling: bool = False
    fp16: bool = False
    optimize: bool = False
    exporter: str = "torchscript"
    max_file_bytes: int = MAX_FILE_BYTES
    overwrite: bool = False
    text_fp16: bool | None = None      # None: fp16-stored weights for big text encoders
    include_source: bool = False       # copy the checkpoint's files in, listed with role "source"
    reuse_from: Path | None = None     # a shipped version whose VAE and text encoder files are copied (export/reuse.py)


class ExportError(RuntimeError):
    """The export cannot go on; the message says why and what to do."""


def _variant(component: Component, suffix: str) -> str:
    base = component.variant
    return suffix if base == "default" else f"{base}-{suffix}"


class _Writer:
    """Collects files, their roles and the parity entries while a version is written."""

    def __init__(self, folder: Path, max_file_bytes: int):
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.entries: dict[str, FileEntry] = {}
        self.components: dict[str, str] = {}
        self.variants: dict[str, dict[str, str]] = {}
        self.parity: dict[str, dict] = {}

    def onnx_file(self, model: onnx.ModelProto, file: str, component: Component, variant: str,
                  precision: str, tolerance) -> None:
        paths = save_onnx(model, self.folder / file, self.max_file_bytes)
        check_onnx(self.folder / file)
        self.parity[file] = parity.check(component, self.folder / file, tolerance)
        self.entries[file] = FileEntry("0" * 64, 0, component.role, variant, precision)
        for extra in paths[1:]:
            self.entries[extra.name] = FileEntry("0" * 64, 0, "external_data", variant, precision)
        if variant == "default":
            self.components[component.role] = file
        else:
            self.variants.setdefault(variant, {})[component.role] = file


def _preview_factors(source: Source) -> tuple[tuple[float, ...], ...]:
    """Least-squares [C+1, 3] map from a latent cell to its decoded mean RGB: the cheap
    preview workers stream while sampling (no decoder run per preview)."""
    decoder = next(c for c in source.components if c.role == "vae_decoder" and c.variant == "default")
    z = torch.randn(8, source.latent.channels, source.latent.height, source.latent.width,
                    generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        img = decoder.module(z / source.latent.scale + source.latent.shift).float()
    f = source.latent.factor
    rgb = torch.nn.functional.avg_pool2d(img[:, :3], f).permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    lat = z.permute(0, 2, 3, 1).reshape(-1, source.latent.channels).numpy()
    design = np.concatenate([lat, np.ones((lat.shape[0], 1), np.float32)], axis=1)
    solution, *_ = np.linalg.lstsq(design, rgb, rcond=None)
    return tuple(tuple(round(float(v), 6) for v in row) for row in solution)


def _sha256_files(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern)) if p.is_file()}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def export_model(source_path: Path, options: ExportOptions, progress: Progress = lambda _: None) -> Manifest:
    final = Path(options.out) / options.name / str(options.version)
    if final.exists() and not options.overwrite:
        raise ExportError(f"{final} exists; pick another --version (or --overwrite)")
    into_itself = final.resolve() == Path(source_path).resolve()
    if into_itself and not options.include_source:
        raise ExportError(f"exporting {final} into itself would drop its own files: add --include-source")
    if into_itself and any(p.is_dir() for p in final.iterdir()):
        raise ExportError(f"{final} has sub-folders, which a version folder cannot hold: export to another version")
    folder = final.with_name(final.name + ".partial")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        manifest = _export_into(Path(source_path), folder, options, progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    folder.rename(final)
    return manifest


# What a training package holds beside its weights: config, model and data cards, curves, grids.
SOURCE_SUFFIXES = (".safetensors", ".json", ".md", ".png", ".txt")
# Files the export itself writes; a source file of the same name would be ambiguous.
EXPORT_WRITES = ("manifest.json", "parity.json", "tokenizer.json")


def _copy_source_files(source_path: Path, folder: Path, writer: _Writer, progress: Progress) -> None:
    """Put the checkpoint's own files beside the ONNX files, so the version folder is the whole model.

    Exporting a folder into itself (`--out` naming the checkpoint's own version) works: files
    that an earlier export wrote are recognised by name and not copied as sources."""
    progress("copying the checkpoint's files")
    for path in sorted(source_path.iterdir()):
        if not path.is_file() or path.suffix not in SOURCE_SUFFIXES or path.name in EXPORT_WRITES:
            continue
        if path.name in writer.entries:
            raise ExportError(f"{path}: a checkpoint file has the name of an exported file; rename it")
        shutil.copy2(path, folder / path.name)
        writer.entries[path.name] = FileEntry("0" * 64, 0, "source")


def _reuse_component(component: Component, writer: _Writer, options: ExportOptions, progress: Progress) -> None:
    """The component as the --reuse-from version's files (default and the twins asked for)."""
    manifest = shipped_version(options.reuse_from)
    wanted = tuple(v for v, on in (("fp16", options.fp16), ("optimized", options.optimize)) if on)
    tolerances = {"default": component.tolerance, "fp16": component.fp16_tolerance or FP16, "optimized": OPTIMIZED}
    for reused in files_of(manifest, component.role, wanted):
        progress(f"copying {reused.file} from {options.reuse_from}, parity against this source")
        writer.parity[reused.file] = copy_checked(options.reuse_from, writer.folder, reused, component,
                                                  tolerances[reused.variant], parity.check)
        writer.entries[reused.file] = FileEntry("0" * 64, 0, component.role, reused.variant, reused.precision)
        for extra in reused.external:
            writer.entries[extra] = FileEntry("0" * 64, 0, "external_data", reused.variant, reused.precision)
        if reused.variant == "default":
            writer.components[component.role] = reused.file
        else:
            writer.variants.setdefault(reused.variant, {})[component.role] = reused.file


def _export_components(source: Source | UpscalerSource | ConceptSource, writer: _Writer, options: ExportOptions,
                       progress: Progress) -> None:
    folder = writer.folder
    for component in source.components:
        if options.reuse_from is not None and component.role in REUSABLE_ROLES and component.variant == "default":
            _reuse_component(component, writer, options, progress)
            continue
        file = f"{component.file_stem}.onnx"
        progress(f"exporting {file}")
        model = export_component(component, options.exporter)
        if component.store_fp16_weights:
            store_weights_fp16(model)
        precision = "fp16-weights" if component.store_fp16_weights else "fp32"
        sizes = " and at twice the size" if component.dynamic_size else ""
        progress(f"checking {file} (onnx.checker, parity at batch 1 and 4{sizes})")
        writer.onnx_file(model, file, component, component.variant, precision, component.tolerance)
        if component.role not in ACCELERATED_ROLES:
            continue
        if options.fp16:
            fp16_file = f"{component.file_stem}.fp16.onnx"
            progress(f"writing {fp16_file}")
            writer.onnx_file(to_fp16(model), fp16_file, component, _variant(component, "fp16"), "fp16",
                             component.fp16_tolerance or FP16)
        if options.optimize:
            opt_file = f"{component.file_stem}.opt.onnx"
            progress(f"writing {opt_file} (ONNX Runtime offline optimisation)")
            writer.onnx_file(optimize_offline(folder / file), opt_file, component,
                             _variant(component, "optimized"), "fp32", OPTIMIZED)


def _write_version(origin: Source | UpscalerSource | ConceptSource, source_path: Path, writer: _Writer,
                   options: ExportOptions, progress: Progress, main_role: str, **fields) -> Manifest:
    """The source files, parity.json and the manifest (`fields`: what the kind of version adds)."""
    if options.include_source:
        _copy_source_files(Path(source_path), writer.folder, writer, progress)
    (writer.folder / "parity.json").write_text(json.dumps(writer.parity, indent=2) + "\n", encoding="utf-8")
    writer.entries["parity.json"] = FileEntry("0" * 64, 0, "report")
    first = onnx.load(str(writer.folder / writer.components[main_role]), load_external_data=False)
    weights = (_sha256_files(source_path, "**/*.safetensors") if origin.kind == "diffusers"
               else _sha256_files(source_path, "*.safetensors"))
    manifest = Manifest(
        name=options.name, version=str(options.version), description=origin.description,
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), image=origin.image,
        components=writer.components, variants=writer.variants,
        onnx=OnnxSpec(opset=OPSET, ir_version=first.ir_version,
                      exporter=f"torch {torch.__version__} {options.exporter}",
                      producer=f"onnxruntime {ort.__version__} (parity), onnx {onnx.__version__}"),
        data_card=origin.data_card, licenses=origin.licenses,
        provenance={**origin.provenance, "source": str(source_path), "source_kind": origin.kind,
                    "source_weights_sha256": weights, "export_git_commit": _git_commit(),
                    "export_host": platform.node()},
        parity={f: {"max_abs": p["max_abs"], "min_cosine": p["min_cosine"]} for f, p in writer.parity.items()},
        **fields,
    )
    progress("writing manifest.json")
    return write_manifest(writer.folder, manifest, writer.entries, options.max_file_bytes)


def _export_into(source_path: Path, folder: Path, options: ExportOptions, progress: Progress) -> Manifest:
    progress(f"loading {source_path}")
    torch.manual_seed(0)
    try:
        source = load_source(source_path, tiling=options.tiling, text_fp16=options.text_fp16)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    writer = _Writer(folder, options.max_file_bytes)
    try:
        _export_components(source, writer, options, progress)
    except ReuseError as exc:
        raise ExportError(str(exc)) from None
    if isinstance(source, ConceptSource):
        return _write_version(source, source_path, writer, options, progress, "concept_classifier", source="atelier",
                              unet=UNetSpec(cond_inputs=()), concepts=source.concepts)
    if isinstance(source, UpscalerSource):
        return _write_version(source, source_path, writer, options, progress, "upscaler", source="atelier",
                              unet=UNetSpec(cond_inputs=()), upscaler=source.upscaler)
    if options.reuse_from is not None:
        shipped = shipped_version(options.reuse_from)
        if not same_tokenizer(options.reuse_from, shipped, source.tokenizer_json):
            raise ExportError(f"--reuse-from {options.reuse_from}: its tokenizer differs from this source's")
        shutil.copyfile(Path(options.reuse_from) / shipped.components["tokenizer"], folder / "tokenizer.json")
    else:
        (folder / "tokenizer.json").write_text(source.tokenizer_json, encoding="utf-8")
    writer.entries["tokenizer.json"] = FileEntry("0" * 64, 0, "tokenizer")
    writer.components["tokenizer"] = "tokenizer.json"
    latent = LatentSpec(**{**source.latent.to_dict(), "preview_rgb": _preview_factors(source)})
    return _write_version(source, source_path, writer, options, progress, "unet", source=source.kind, latent=latent,
                          schedule=source.schedule, unet=source.unet, text_encoder=source.text_encoder,
                          styles=source.styles, defaults=source.defaults)
