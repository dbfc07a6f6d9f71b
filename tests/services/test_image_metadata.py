"""Every image file carries its provenance (services/worker/image_metadata.py): PNG text chunks
(an AUTOMATIC1111 `parameters` line and the full provenance JSON), an XMP packet (and the
parameters line in EXIF UserComment) in JPEG and WEBP, nothing in raw pixels. Read back with
Pillow, as a user's tool would."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from services.common.jobs import JobSpec, PromptSpec
from services.worker.image_metadata import parameters
from services.worker.images import EXIF_IFD, USER_COMMENT, XMP_NAMESPACE
from tests.services import toy_runtime


def made(output_format: str, prompt: str = "a red apple", **changes) -> tuple[dict, bytes]:
    spec = JobSpec(prompts=(PromptSpec(prompt, "blurry", "flat"),), seeds=(11,), output_format=output_format,
                   sampler="euler_ancestral", steps=6, guidance_scale=3.0, **changes)
    ((data, blob),) = toy_runtime.made_alone(spec)
    return data, blob


def xmp_fields(image: Image.Image) -> dict[str, str]:
    root = ET.fromstring(image.info["xmp"])
    return {el.tag.removeprefix(f"{{{XMP_NAMESPACE}}}"): el.text for el in root.iter()
            if el.tag.startswith(f"{{{XMP_NAMESPACE}}}")}


def test_a_png_carries_an_a1111_parameters_line_and_its_full_provenance():
    data, blob = made("png")
    image = Image.open(io.BytesIO(blob))
    assert json.loads(image.text["provenance"]) == data["provenance"]
    prompt, negative, settings = image.text["parameters"].split("\n")
    assert (prompt, negative) == ("a red apple", "Negative prompt: blurry")
    assert settings.startswith("Steps: 6, Sampler: Euler a, CFG scale: 3.0, Seed: 11, Size: 16x16, "
                               f"Model hash: {data['provenance']['model_sha256'][:10]}, Model: toy/1, ")
    assert "Eta: 1.0" in settings and "Style: flat" in settings


def test_a_value_holding_a_separator_is_quoted_as_a1111_quotes_it():
    data, _ = made("png")
    line = parameters({**data["provenance"], "style": "flat, bold"}).split("\n")[-1]
    assert 'Style: "flat, bold"' in line


def test_the_metadata_leaves_the_pixels_as_they_were():
    _, raw = made("raw_rgba8")
    _, blob = made("png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(blob)).convert("RGBA")).tobytes(), raw)


def test_an_img2img_line_says_its_strength_and_a_prompt_in_any_script_survives():
    init = io.BytesIO()
    Image.new("RGBA", (16, 16), (200, 30, 30, 255)).save(init, "PNG")
    data, blob = made("png", prompt="une pomme, café ☕", init_image=init.getvalue(), strength=0.5)
    image = Image.open(io.BytesIO(blob))
    assert image.text["parameters"].startswith("une pomme, café ☕\n")
    assert "Denoising strength: 0.5" in image.text["parameters"]
    assert json.loads(image.text["provenance"])["steps_run"] == 3


@pytest.mark.parametrize("output_format", ["jpeg", "webp"])
def test_jpeg_and_webp_carry_both_fields_in_xmp(output_format):
    data, blob = made(output_format, prompt="a <red> & 'apple'")
    image = Image.open(io.BytesIO(blob))
    assert image.format == output_format.upper()
    fields = xmp_fields(image)
    assert json.loads(fields["provenance"]) == data["provenance"]
    assert fields["parameters"].startswith("a <red> & 'apple'\nNegative prompt: blurry\nSteps: 6")
    comment = image.getexif().get_ifd(EXIF_IFD)[USER_COMMENT]
    assert comment == b"UNICODE\0" + fields["parameters"].encode("utf-16-be")  # where A1111 reads it


def test_raw_pixels_carry_nothing_but_pixels():
    data, blob = made("raw_rgba8")
    assert len(blob) == data["width"] * data["height"] * 4
