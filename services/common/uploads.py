"""Uploaded images (init image, mask): one rule for the gateway, which refuses them at Submit, and the worker.

Only PNG, JPEG and WEBP are opened: no other Pillow plugin ever sees the bytes. The
pixel count is read from the header and checked before anything is decoded, so a small
file that claims gigapixels (a decompression bomb) is refused, not turned into an
out-of-memory crash. Then the image is decoded fully, so that a truncated or corrupt
file is refused where it arrives instead of failing its job on a worker.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

FORMATS = ("PNG", "JPEG", "WEBP")
FORMAT_NAMES = "PNG, JPEG or WEBP"

# The pixel limit is enforced right after the header is read; Pillow's process-wide
# bomb warning would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class UnusableImage(ValueError):
    """Why an upload cannot be used, worded for the client."""


def decode(data: bytes, max_pixels: int, max_side: int | None = None) -> Image.Image:
    """The fully decoded image, or UnusableImage; with `max_side`, neither side may exceed it
    (checked from the header, like the pixel count)."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except Image.DecompressionBombError:
        raise UnusableImage(f"the header claims more than {max_pixels} pixels") from None
    except Exception:  # noqa: BLE001 - Pillow raises many kinds for bad bytes
        raise UnusableImage(f"not a readable {FORMAT_NAMES} image") from None
    width, height = int(image.width), int(image.height)
    if width < 1 or height < 1:
        raise UnusableImage("the header claims an empty image")
    if width * height > max_pixels:
        raise UnusableImage(f"{width}x{height} = {width * height} pixels is over the limit of {max_pixels} pixels")
    if max_side is not None and max(width, height) > max_side:
        raise UnusableImage(f"{width}x{height} has a side over the limit of {max_side} pixels")
    try:
        image.load()
    except Exception as err:  # noqa: BLE001 - truncated data, a broken stream, a missing scan: all the file's fault
        raise UnusableImage(f"the {image.format} image cannot be decoded ({err})") from None
    return image


def size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header of an image :func:`decode` has accepted."""
    with Image.open(io.BytesIO(data), formats=FORMATS) as image:
        return int(image.width), int(image.height)
