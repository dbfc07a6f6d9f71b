"""Uploaded images (init image, mask, an image to upscale) checked at Submit: bytes, then `services.common.uploads`.

The image is decoded fully (within the pixel limit, checked from the header first), so a
truncated or corrupt upload is refused with its field named instead of being queued.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.uploads import UnusableImage, decode
from services.gateway.limits import Limits, Violation


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    mode: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


def inspect(data: bytes, max_bytes: int, max_pixels: int, max_side: int | None = None) -> ImageHeader:
    """The format, size and mode of an uploaded image that decodes within the limits, or UnusableImage."""
    if len(data) > max_bytes:
        raise UnusableImage(f"{len(data)} bytes is over the limit of {max_bytes} bytes")
    with decode(data, max_pixels, max_side) as image:
        return ImageHeader(image.format or "", image.width, image.height, image.mode)


def upload_header(field: str, data: bytes, limits: Limits, out: list[Violation],
                  max_side: int | None = None) -> ImageHeader | None:
    """An uploaded image's header, decoded within the upload limits; its problem goes to `out` as `field`'s."""
    try:
        return inspect(data, limits.max_upload_bytes, limits.max_upload_pixels, max_side)
    except UnusableImage as exc:
        out.append((field, str(exc)))
        return None
