"""Uploads (init images, masks) go through one decoder: the gateway refuses at Submit what a worker would fail on."""

import io

import pytest
from PIL import Image

from services.common.jobs import ErrorCode, JobState
from services.common.uploads import UnusableImage, decode
from tests.gateway.test_validation import gif_bytes, jpeg_without_scan, png_claiming, truncated_png
from tests.services.test_pipeline import executor, models, store, submit  # noqa: F401 - the pipeline's fixtures

# services.common.uploads silences this warning at import; pytest restores the filters for each test.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

UNUSABLE = {
    "half a PNG": truncated_png(),
    "a JPEG with no scan": jpeg_without_scan(),
    "a GIF": gif_bytes(),
    "not an image": b"hello world" * 10,
    "a header claiming 10^10 pixels": png_claiming(100_000, 100_000),
    "a header claiming 10^8 pixels": png_claiming(10_000, 10_000),
}


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_unusable_uploads_are_refused_with_a_reason(case):
    with pytest.raises(UnusableImage) as err:
        decode(UNUSABLE[case], max_pixels=64 * 64)
    assert str(err.value)


def test_a_whole_image_within_the_limit_decodes():
    image = decode(_png(48, 16), max_pixels=48 * 16)
    assert image.size == (48, 16) and image.getpixel((0, 0)) == (10, 200, 30)
    with pytest.raises(UnusableImage, match="over the limit"):
        decode(_png(48, 16), max_pixels=48 * 16 - 1)


@pytest.mark.redis
@pytest.mark.parametrize("field", ["init_image", "mask"])
def test_a_job_queued_with_an_undecodable_upload_fails_as_invalid_input(store, executor, field):  # noqa: F811
    uploads = {"init_image": _png(16, 16), field: truncated_png()}
    job_id = submit(store, strength=0.5, steps=2, **uploads)
    assert executor.run(job_id) == JobState.FAILED
    job = store.get(job_id)
    assert job.error_code == ErrorCode.INVALID_INPUT, (job.error_code, job.error_message)
    assert "cannot be decoded" in job.error_message
