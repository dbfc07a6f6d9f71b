"""What "was this image made here?" compares: an image's fingerprint.

Three parts, all of the image as a person sees it (alpha composited over white, the
background the service's JPEGs have):

- ``sha256`` of the delivered bytes: the exact file, found at once;
- ``phash``, the 64-bit perceptual hash of the `imagehash` library (a DCT of the 32x32
  grey image, each low-frequency coefficient against their median): what a lookup
  retrieves candidates by (docs/ARCHITECTURE.md, "Was this made here?");
- ``thumbnail``, the colour image box-averaged to 16x16 (768 bytes): what decides whether
  a candidate is the same picture. At the service's 32x32 sizes a 64-bit grey hash cannot
  tell an emoji from its other skin tones or colours: on the emoji set, requiring a hash
  distance as well as the thumbnails' agreement lost found copies and removed no false match
  the thumbnails let through (docs/BENCHMARKS.md, section on content credentials).

The thresholds were chosen with `python -m bench.image_lookup --sweep --seed 0` (one random
split of the emoji set) and are reported on another (`--seed 1`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from services.common import uploads

BACKGROUND = (255, 255, 255, 255)
THUMBNAIL_SIDE = 16
PHASH_BITS = 64
# A candidate is the same picture when its thumbnails agree to this PSNR at 16x16 and at 8x8.
MIN_PSNR_16 = 26.0
MIN_PSNR_8 = 32.0


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    phash: int  # 64 bits
    thumbnail: bytes  # THUMBNAIL_SIDE^2 x RGB uint8


@dataclass(frozen=True)
class Likeness:
    """How close a candidate is to a query: the hash distance in bits and the thumbnails' PSNR."""

    phash_distance: int
    psnr_16: float
    psnr_8: float

    @property
    def same_picture(self) -> bool:
        return self.psnr_16 >= MIN_PSNR_16 and self.psnr_8 >= MIN_PSNR_8


def flattened(image: Image.Image) -> Image.Image:
    """The RGB image over the fixed background."""
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND), rgba).convert("RGB")


def of_image(image: Image.Image, data: bytes) -> Fingerprint:
    """The fingerprint of a decoded image whose file is ``data``."""
    flat = flattened(image)
    bits = imagehash.phash(flat).hash.flatten()
    phash = int("".join("1" if b else "0" for b in bits), 2)
    thumbnail = flat.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX).tobytes()
    return Fingerprint(hashlib.sha256(data).hexdigest(), phash, thumbnail)


def of_file(data: bytes, max_pixels: int) -> Fingerprint:
    """The fingerprint of an encoded PNG, JPEG or WEBP (uploads.UnusableImage when it is none)."""
    return of_image(uploads.decode(data, max_pixels), data)


def of_rgba(rgba: np.ndarray, data: bytes) -> Fingerprint:
    """The fingerprint of uint8 ``[H, W, 4]`` pixels delivered as ``data`` (raw RGBA8 rows, or their file)."""
    return of_image(Image.fromarray(np.ascontiguousarray(rgba, dtype=np.uint8), "RGBA"), data)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB of each of ``b``'s images against ``a`` (99 where identical)."""
    mse = np.mean((b - a) ** 2, axis=(1, 2, 3))
    return np.where(mse == 0, 99.0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)))


def _thumbs(data: list[bytes]) -> np.ndarray:
    flat = np.frombuffer(b"".join(data), dtype=np.uint8)
    return flat.reshape(len(data), THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3).astype(np.float64)


def _halved(t: np.ndarray) -> np.ndarray:
    return t.reshape(t.shape[0], t.shape[1] // 2, 2, t.shape[2] // 2, 2, 3).mean(axis=(2, 4))


def likenesses(query: Fingerprint, phashes: list[int], thumbnails: list[bytes]) -> list[Likeness]:
    """How close each recorded image (its phash and thumbnail) is to ``query``, all at once."""
    if not thumbnails:
        return []
    a, b = _thumbs([query.thumbnail]), _thumbs(thumbnails)
    p16, p8 = _psnr(a, b), _psnr(_halved(a), _halved(b))
    return [Likeness(hamming(query.phash, h), float(x), float(y)) for h, x, y in zip(phashes, p16, p8, strict=True)]


def likeness(query: Fingerprint, phash: int, thumbnail: bytes) -> Likeness:
    """How close one recorded image is to ``query``."""
    return likenesses(query, [phash], [thumbnail])[0]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# Retrieval (services/common/store/image_records.py): the hash in BANDS bytes; a recorded image
# is a candidate when some band equals the query's or differs from it in one bit, which finds
# every image within 2 * BANDS - 1 bits (pigeonhole) and most further (bench/image_lookup.py).
BANDS = 8
BAND_BITS = PHASH_BITS // BANDS


def bands(phash: int) -> list[int]:
    mask = (1 << BAND_BITS) - 1
    return [(phash >> (BAND_BITS * i)) & mask for i in range(BANDS)]


def probes(phash: int) -> list[tuple[int, int]]:
    """(band, value) pairs a lookup reads: each band's value and its one-bit neighbours."""
    out = []
    for band, value in enumerate(bands(phash)):
        out.append((band, value))
        out.extend((band, value ^ (1 << bit)) for bit in range(BAND_BITS))
    return out
