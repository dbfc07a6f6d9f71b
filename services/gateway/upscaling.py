"""What the gateway checks of a request that upscales: the cascade (``upscale``) and UPSCALE jobs.

A request upscales when it sets ``upscale`` above 1 (a base model's images, then the upscaler)
or sends ``upscale_image`` (an UPSCALE job: the upscaler alone on that image). Both name the
upscaler in ``upscaler``/``upscaler_version`` (empty: the catalog's default upscaler) and may set
``upscale_steps`` or ``upscale_fast``. The image to upscale is decoded here, like every upload
(services/common/uploads.py), within the upscaler's ``max_input_side``, so a bomb or a broken
file is refused at Submit rather than failing its job (docs/API.md, "Upscaling").
"""

from __future__ import annotations

from services.common.jobs import JobSpec
from services.common.plan import UpscalerFacts, wants_upscale
from services.gateway.catalog import ModelCatalog, ModelEntry
from services.gateway.images import upload_header
from services.gateway.limits import Limits, Violation

# Colour modes an image to upscale may have: all become RGBA without loss.
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")
_ONLY_WHEN_UPSCALING = "is only used when upscaling (upscale 4, or an upscale_image)"


def facts_of(entry: ModelEntry) -> UpscalerFacts:
    """What planning an upscale needs of an upscaler version, from its manifest."""
    return UpscalerFacts.of(entry.name, entry.version, entry.sha256, entry.manifest.upscaler, entry.fast_upscaler)


def violations(spec: JobSpec, model: ModelEntry | None, catalog: ModelCatalog, limits: Limits) -> list[Violation]:
    """Every problem with the request's upscaling fields (none when it does not upscale and sets none)."""
    if not wants_upscale(spec):
        named = [("upscale_steps", spec.upscale_steps), ("upscaler", spec.upscaler),
                 ("upscaler_version", spec.upscaler_version), ("upscale_fast", spec.upscale_fast)]
        return [(name, _ONLY_WHEN_UPSCALING) for name, value in named if value]
    out: list[Violation] = []
    upscaler = _upscaler(spec, catalog, out)
    if spec.upscale_steps > limits.max_steps:
        out.append(("upscale_steps", f"{spec.upscale_steps} is over the limit of {limits.max_steps}"))
    if spec.upscale_fast and spec.upscale_steps:
        out.append(("upscale_steps", "must be 0 with upscale_fast (the one-pass network takes no steps)"))
    if upscaler is None:
        return out
    factor = upscaler.manifest.upscaler.factor
    if spec.upscale_fast and not upscaler.fast_upscaler:
        out.append(("upscale_fast", f"upscaler {upscaler.key} has no one-pass network"))
    if spec.upscale_image is not None:
        if spec.upscale not in (0, factor):
            out.append(("upscale", f"must be 0 or {factor} with upscale_image: "
                                   f"upscaler {upscaler.key} makes x{factor}"))
        out += _upscale_image(spec, upscaler, limits)
    elif spec.upscale != factor:
        out.append(("upscale", f"{spec.upscale} is not offered: upscaler {upscaler.key} makes x{factor} "
                               "(0 or 1: no upscaling)"))
    elif model is not None:
        out += _cascade_size(spec, model, upscaler, limits)
    return out


def _upscaler(spec: JobSpec, catalog: ModelCatalog, out: list[Violation]) -> ModelEntry | None:
    entry = catalog.resolve_upscaler(spec.upscaler, spec.upscaler_version)
    name = spec.upscaler or catalog.default_upscaler
    if entry is not None:
        if entry.is_upscaler:
            return entry
        out.append(("upscaler", f"{name} is not an upscaler (upscalers: {_names(catalog)})"))
    elif any(e.name == name for e in catalog.entries()):
        versions = [e.version for e in catalog.entries() if e.name == name]
        out.append(("upscaler_version", f"unknown version {spec.upscaler_version!r} (known: {', '.join(versions)})"))
    else:
        out.append(("upscaler", f"unknown upscaler {name!r} (upscalers: {_names(catalog)})"))
    return None


def _names(catalog: ModelCatalog) -> str:
    return ", ".join(sorted({e.name for e in catalog.entries() if e.is_upscaler})) or "none installed"


def _upscale_image(spec: JobSpec, upscaler: ModelEntry, limits: Limits) -> list[Violation]:
    out: list[Violation] = []
    header = upload_header("upscale_image.data", spec.upscale_image, limits, out,
                           upscaler.manifest.upscaler.max_input_side)
    if header is None:
        return out
    if header.mode not in MODES:
        out.append(("upscale_image.data", f"colour mode {header.mode} is not taken: RGB, RGBA, grey or palette"))
    for name, side in (("width", header.width), ("height", header.height)):
        asked = getattr(spec, name)
        if asked and asked != side:
            out.append((name, f"must be 0 or the image's own {name}, {side}"))
    out += _output_sides(header.width, header.height, upscaler, limits, "upscale_image.data")
    return out


def _cascade_size(spec: JobSpec, model: ModelEntry, upscaler: ModelEntry, limits: Limits) -> list[Violation]:
    width, height = spec.width or model.manifest.image.width, spec.height or model.manifest.image.height
    largest = upscaler.manifest.upscaler.max_input_side
    if max(width, height) > largest:
        return [("upscale", f"a {width}x{height} image is over the largest side of {largest} pixels "
                            f"upscaler {upscaler.key} takes")]
    return _output_sides(width, height, upscaler, limits, "upscale")


def _output_sides(width: int, height: int, upscaler: ModelEntry, limits: Limits, field: str) -> list[Violation]:
    factor = upscaler.manifest.upscaler.factor
    if max(width, height) * factor > limits.max_side:
        return [(field, f"{width}x{height} upscaled x{factor} is {width * factor}x{height * factor}, over the "
                        f"limit of {limits.max_side} pixels a side")]
    return []
