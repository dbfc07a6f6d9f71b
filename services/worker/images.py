"""Pixels in and out of the worker: uploaded images and masks, finished images, previews, the networks' form."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

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


def premultiplied(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA uint8 `[B, H, W, 4]` -> premultiplied float32 `[B, 4, H, W]` in [-1, 1],
    the form the networks take (colour times alpha: a transparent pixel is exactly transparent black)."""
    x = np.asarray(rgba, dtype=np.float32) / np.float32(255.0)
    x = np.concatenate([x[..., :3] * x[..., 3:4], x[..., 3:4]], axis=-1)
    return np.ascontiguousarray(np.transpose(x * 2.0 - 1.0, (0, 3, 1, 2)), dtype=np.float32)


def straight_rgba8(x: np.ndarray) -> np.ndarray:
    """Premultiplied float `[B, 4, H, W]` in [-1, 1] -> straight-alpha RGBA uint8 `[B, H, W, 4]`:
    colour divided by alpha where alpha is visible, black where it is not."""
    x = np.clip((np.transpose(np.asarray(x, dtype=np.float32), (0, 2, 3, 1)) + 1.0) * 0.5, 0.0, 1.0)
    a = x[..., 3:4]
    rgb = np.where(a > 0.5 / 255, np.clip(x[..., :3] / np.maximum(a, 1e-6), 0.0, 1.0), 0.0)
    return (np.concatenate([rgb, a], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def premultiplied_rgb8(x: np.ndarray) -> np.ndarray:
    """Premultiplied float `[B, 4, H, W]` in [-1, 1] -> RGB uint8 `[B, H, W, 3]` over black (a preview)."""
    rgb = np.clip((np.transpose(np.asarray(x[:, :3], dtype=np.float32), (0, 2, 3, 1)) + 1.0) * 127.5, 0, 255)
    return (rgb + 0.5).astype(np.uint8)


def encode(rgba: np.ndarray, output_format: str, quality: int = 0,
           text: dict[str, str] | None = None) -> tuple[bytes, str]:
    """One RGBA uint8 `[H, W, 4]` image -> (bytes, MIME type), carrying the `text` fields
    (PNG text chunks; an XMP packet in JPEG and WEBP, and `parameters` in their EXIF
    UserComment too, where AUTOMATIC1111's web UI looks; raw pixels carry none)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    quality = quality or DEFAULT_QUALITY
    if output_format == OutputFormat.RAW_RGBA8:
        return rgba.tobytes(), MIME_TYPES[output_format]
    image = Image.fromarray(rgba, "RGBA")
    out = io.BytesIO()
    if output_format == OutputFormat.PNG:
        image.save(out, "PNG", optimize=False, compress_level=6, pnginfo=_png_text(text or {}))
    elif output_format == OutputFormat.JPEG:
        # JPEG has no alpha: composite over white, as the proto promises.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(background, image).convert("RGB")
        flat.save(out, "JPEG", quality=quality, **_xmp_and_exif(text))
    elif output_format == OutputFormat.WEBP:
        image.save(out, "WEBP", lossless=quality >= 100, quality=quality, **_xmp_and_exif(text))
    else:
        raise ValueError(f"unknown output format {output_format!r}")
    return out.getvalue(), MIME_TYPES[output_format]


def _png_text(text: dict[str, str]) -> PngInfo:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)  # iTXt (UTF-8) when the value is not Latin-1
    return info


XMP_NAMESPACE = "urn:atelier:metadata:1"


def xmp_packet(text: dict[str, str]) -> bytes:
    """An XMP packet holding each field as ``atelier:<key>`` (Adobe XMP Specification Part 1)."""
    props = "".join(f"<atelier:{key}>{escape(value)}</atelier:{key}>" for key, value in text.items())
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:atelier="{XMP_NAMESPACE}">{props}</rdf:Description>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


EXIF_IFD, USER_COMMENT = 0x8769, 0x9286


def _xmp_and_exif(text: dict[str, str] | None) -> dict[str, bytes]:
    if not text:
        return {}
    saved = {"xmp": xmp_packet(text)}
    if "parameters" in text:
        exif = Image.Exif()
        # EXIF UserComment: an 8-byte character code, then the text (UTF-16 big-endian, as A1111 writes it).
        exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\0" + text["parameters"].encode("utf-16-be")
        saved["exif"] = exif.tobytes()
    return saved


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
