"""The per-tenant record of delivered images and its lookup (services/common/store/image_records.py)
on a real Redis: the exact file, a resized or re-encoded copy, another picture, another tenant,
and the retention period."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from services.common import image_fingerprint as fp
from services.common.store import JobStore

RETENTION = 3600


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix="t:")


def emoji(seed: int, size: int = 32) -> Image.Image:
    """A disc of a random colour with a random mark on a transparent background: an emoji-like picture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    rgba = np.zeros((size, size, 4), np.uint8)
    disc = (yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.16
    rgba[disc] = (*rng.integers(0, 256, 3), 255)
    cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.08, 0.18)
    mark = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & disc
    rgba[mark] = (*rng.integers(0, 256, 3), 255)
    return Image.fromarray(rgba, "RGBA")


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def record(store: JobStore, tenant: str, job_id: str, data: bytes, now: float = 1000.0) -> None:
    store.record_image(tenant, job_id, 0, "image/png", fp.of_file(data, 1 << 20),
                       json.dumps({"model_name": "atelier-emoji", "seed": 7}), RETENTION, now=now)


def test_the_exact_file_is_found_with_its_job_and_provenance(store):
    data = encoded(emoji(1))
    record(store, "acme", "job-1", data)
    (match,) = store.lookup_image("acme", fp.of_file(data, 1 << 20), now=1001.0)
    assert (match.job_id, match.index, match.exact, match.mime_type) == ("job-1", 0, True, "image/png")
    assert json.loads(match.provenance_json) == {"model_name": "atelier-emoji", "seed": 7}
    assert match.likeness.phash_distance == 0


# JPEG at quality 95: chroma subsampling shifts a saturated 32x32 picture's colours past the
# thumbnails' thresholds at 85 (the goals name resizing and WEBP; docs/BENCHMARKS.md).
@pytest.mark.parametrize("change", ["half", "double", "webp", "jpeg"])
def test_a_resized_or_re_encoded_copy_is_found_but_not_as_the_exact_file(store, change):
    image = emoji(2)
    record(store, "acme", "job-2", encoded(image))
    copy = {"half": lambda: encoded(image.resize((16, 16), Image.Resampling.LANCZOS)),
            "double": lambda: encoded(image.resize((64, 64), Image.Resampling.LANCZOS)),
            "webp": lambda: encoded(image, "WEBP", quality=75),
            "jpeg": lambda: encoded(Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB"),
                                    "JPEG", quality=95)}[change]()
    (match,) = store.lookup_image("acme", fp.of_file(copy, 1 << 20), now=1001.0)
    assert match.job_id == "job-2" and not match.exact


def test_other_pictures_are_not_found(store):
    for seed in range(20):
        record(store, "acme", f"job-{seed}", encoded(emoji(seed)))
    for seed in range(100, 120):
        assert store.lookup_image("acme", fp.of_file(encoded(emoji(seed)), 1 << 20), now=1001.0) == []


def test_another_tenant_finds_nothing_of_this_tenant(store):
    data = encoded(emoji(3))
    record(store, "acme", "job-3", data)
    assert store.lookup_image("globex", fp.of_file(data, 1 << 20), now=1001.0) == []
    assert [m.job_id for m in store.lookup_image("acme", fp.of_file(data, 1 << 20), now=1001.0)] == ["job-3"]


def test_a_record_lasts_the_retention_period(store, redis_client):
    data = encoded(emoji(4))
    record(store, "acme", "job-4", data, now=1000.0)
    query = fp.of_file(encoded(emoji(4), "WEBP", quality=80), 1 << 20)
    assert store.lookup_image("acme", query, now=1000.0 + RETENTION - 1)
    assert store.lookup_image("acme", query, now=1000.0 + RETENTION + 1) == []  # past it, even before Redis expires it
    sha = fp.of_file(data, 1 << 20).sha256
    assert 0 < redis_client.ttl(store.image_key("acme", sha)) <= RETENTION
    assert all(0 < redis_client.ttl(k) <= RETENTION for k in redis_client.scan_iter("t:tenant:acme:phash:*"))


def test_an_image_recorded_again_points_at_its_newest_job(store):
    data = encoded(emoji(5))
    record(store, "acme", "job-old", data)
    record(store, "acme", "job-new", data, now=2000.0)
    assert [m.job_id for m in store.lookup_image("acme", fp.of_file(data, 1 << 20), now=2001.0)] == ["job-new"]


def test_raw_pixels_and_their_png_have_one_picture():
    image = emoji(6)
    pixels = np.asarray(image)
    raw = fp.of_rgba(pixels, pixels.tobytes())
    png = fp.of_file(encoded(image), 1 << 20)
    assert raw.sha256 != png.sha256
    assert (raw.phash, raw.thumbnail) == (png.phash, png.thumbnail)


def test_every_image_within_the_guaranteed_distance_is_a_candidate():
    """The probes reach every hash within 2 x BANDS - 1 bits (one band then differs by at most one bit)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
        flips = rng.choice(64, size=2 * fp.BANDS - 1, replace=False)
        b = a
        for bit in flips:
            b ^= 1 << int(bit)
        probed = set(fp.probes(a))
        assert any((band, value) in probed for band, value in enumerate(fp.bands(b)))
