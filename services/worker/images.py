"""Pixels in and out of the worker: uploaded init images and masks, finished images, previews."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from services.common import uploads
from services.common.jobs import OutputFormat

MIME_TYPES = {
    OutputFormat.PNG: "image/png",
    OutputFormat.JPEG: "image/jpeg",
    OutputFormat.WEBP: "image/webp",
    OutputFormat.RAW_RGBA8: "application/x-atelier-rgba8",
}
DEFAULT_QUALITY = 90


class BadImage(ValueError):
    """An uploaded image that cannot be used (the job fails with INVALID_INPUT)."""


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    # The gateway refused what this refuses at Submit; checked again for jobs queued before that.
    try:
        return uploads.decode(data, max_pixels)
    except uploads.UnusableImage as err:
        raise BadImage(str(err)) from None


def load_rgba(data: bytes, width: int, height: int, max_pixels: int) -> np.ndarray:
    """An init image as uint8 `[height, width, 4]`, resized to the output size."""
    image = _open_checked(data, max_pixels).convert("RGBA")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).copy()


def load_mask(data: bytes, width: int, height: int, max_pixels: int) -> np.ndarray:
    """A repaint mask as float64 `[height, width]` in [0, 1]: white (or opaque alpha) = repaint."""
    image = _open_checked(data, max_pixels)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        gray = image.convert("RGBA").getchannel("A")
    else:
        gray = image.convert("L")
    if gray.size != (width, height):
        gray = gray.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.float64) / 255.0


def encode(rgba: np.ndarray, output_format: str, quality: int = 0) -> tuple[bytes, str]:
    """One RGBA uint8 `[H, W, 4]` image -> (bytes, MIME type)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    quality = quality or DEFAULT_QUALITY
    if output_format == OutputFormat.RAW_RGBA8:
        return rgba.tobytes(), MIME_TYPES[output_format]
    image = Image.fromarray(rgba, "RGBA")
    out = io.BytesIO()
    if output_format == OutputFormat.PNG:
        image.save(out, "PNG", optimize=False, compress_level=6)
    elif output_format == OutputFormat.JPEG:
        # JPEG has no alpha: composite over white, as the proto promises.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        Image.alpha_composite(background, image).convert("RGB").save(out, "JPEG", quality=quality)
    elif output_format == OutputFormat.WEBP:
        image.save(out, "WEBP", lossless=quality >= 100, quality=quality)
    else:
        raise ValueError(f"unknown output format {output_format!r}")
    return out.getvalue(), MIME_TYPES[output_format]


def preview_jpeg(rgb: np.ndarray, longest_side: int, quality: int = 70) -> tuple[bytes, int, int]:
    """A small JPEG of one RGB uint8 `[h, w, 3]` image -> (bytes, width, height)."""
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    scale = longest_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue(), image.width, image.height
