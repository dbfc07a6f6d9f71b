"""Uploaded images (init image, mask) judged from their header, never decoded here.

Pillow's `Image.open` reads only the header. The pixel count is checked against the
limit before any worker decodes the image, so a small file that claims gigapixels (a
decompression bomb) is refused with its field named, not turned into an out-of-memory
crash. Only PNG, JPEG and WEBP are opened: no other Pillow plugin ever sees the bytes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP")

# The gateway enforces its own (lower) pixel limit right after the header is read;
# Pillow's process-wide bomb warning would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    mode: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


class ImageRejected(ValueError):
    """Why an upload cannot be used, for the field violation's description."""


def inspect(data: bytes, max_bytes: int, max_pixels: int) -> ImageHeader:
    """The header of an uploaded image, or ImageRejected."""
    if len(data) > max_bytes:
        raise ImageRejected(f"{len(data)} bytes is over the limit of {max_bytes} bytes")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            header = ImageHeader(im.format or "", int(im.width), int(im.height), im.mode)
    except Image.DecompressionBombError:
        raise ImageRejected(f"the header claims more than {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageRejected(f"not a readable {', '.join(FORMATS[:-1])} or {FORMATS[-1]} image") from None
    if header.width < 1 or header.height < 1:
        raise ImageRejected("the header claims an empty image")
    if header.pixels > max_pixels:
        raise ImageRejected(
            f"{header.width}x{header.height} = {header.pixels} pixels is over the limit of {max_pixels} pixels"
        )
    return header
