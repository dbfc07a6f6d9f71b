"""Content credentials and "was this made here?" through the real stack: the SDK and the CLI ->
the gRPC gateway -> Redis -> a real worker process with the shipped model, signing with the
development chain `atelier up` made (docs/API.md, "Content credentials", "Was this made here?").

Images come back signed (read with the c2pa library's Reader, trusted through the chain's CA;
a tampered copy fails); raw RGBA8 rows carry a detached manifest that binds them; LookupImage
finds the delivered file, a resized and a re-encoded copy, and nothing for another tenant or
another picture."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from atelier.v1 import types_pb2
from atelier_cli.main import main as cli_main
from clients import Client, InvalidArgument, Unauthenticated
from services.common import credentials
from services.gateway.auth import add_key
from tests.clients.deadlines import call_within, within
from tests.clients.real_stack import EMOJI_JOB, JOB_SECONDS, assert_emoji

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def artifact_of(client: Client, seed: int, **fields):
    events = within(client.generate(seeds=[seed], **{**EMOJI_JOB, **fields}), JOB_SECONDS)
    assert events[-1].finished.state == types_pb2.JOB_STATE_SUCCEEDED, events[-1].finished.error_message
    (artifact,) = [e.artifact for e in events if e.HasField("artifact")]
    return events[0].job_id, artifact


@pytest.fixture(scope="module")
def delivered(real_stack):
    with Client(real_stack.address, real_stack.api_key) as client:
        return artifact_of(client, 501)


def test_a_delivered_png_is_signed_by_the_service_and_names_its_model(real_stack, delivered):
    _, artifact = delivered
    assert_emoji(artifact.data, real_stack.manifest)
    found = credentials.verify(artifact.data, "image/png", trust_anchors_pem=real_stack.signing_ca.read_bytes())
    assert found.state == "Trusted", found.failures
    assert found.digital_source_type == credentials.TRAINED_ALGORITHMIC_MEDIA
    p = found.provenance
    assert (p["model_name"], p["model_version"], p["model_sha256"]) == (real_stack.model, real_stack.version,
                                                                         real_stack.model_sha256)
    assert (p["seed"], p["prompt"]) == (artifact.provenance.seed, artifact.provenance.prompt)
    assert artifact.content_credentials == b""  # a file carries its manifest inside


def test_a_tampered_png_fails_verification(real_stack, delivered, tmp_path):
    _, artifact = delivered
    edited = bytearray(artifact.data)
    edited[artifact.data.index(b"IDAT") + 16] ^= 0x55
    found = credentials.verify(bytes(edited), "image/png", trust_anchors_pem=real_stack.signing_ca.read_bytes())
    assert not found.intact
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(artifact.data)
    bad.write_bytes(bytes(edited))
    assert cli_main(["verify", str(good), "--trust", str(real_stack.signing_ca), "--require-trust"]) == 0
    assert cli_main(["verify", str(bad), "--trust", str(real_stack.signing_ca)]) == 1


def test_jpeg_and_raw_pixels_are_signed_too(real_stack):
    anchors = real_stack.signing_ca.read_bytes()
    with Client(real_stack.address, real_stack.api_key) as client:
        _, jpeg = artifact_of(client, 502, output_format="jpeg")
        _, raw = artifact_of(client, 503, output_format="raw_rgba8")
    assert credentials.verify(jpeg.data, "image/jpeg", trust_anchors_pem=anchors).state == "Trusted"
    assert len(raw.data) == raw.width * raw.height * 4
    found = credentials.verify(raw.data, raw.mime_type, raw.content_credentials, anchors)
    assert found.state == "Trusted" and found.provenance["seed"] == 503


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_lookup_finds_the_file_and_its_resized_and_re_encoded_copies(real_stack, delivered):
    job_id, artifact = delivered
    image = Image.open(io.BytesIO(artifact.data))
    with Client(real_stack.address, real_stack.api_key) as client:
        exact = call_within(lambda: client.lookup_image(artifact.data))
        assert [(m.job_id, m.index, m.exact) for m in exact][:1] == [(job_id, 0, True)]
        assert exact[0].provenance.model_sha256 == real_stack.model_sha256 and exact[0].mime_type == "image/png"
        for copy in (_encoded(image.resize((64, 64), Image.Resampling.LANCZOS), "PNG"),
                     _encoded(image.resize((16, 16), Image.Resampling.LANCZOS), "PNG"),
                     _encoded(image, "WEBP", quality=75)):
            matches = call_within(lambda copy=copy: client.lookup_image(copy))
            assert job_id in [m.job_id for m in matches] and not any(m.exact for m in matches)
        noise = Image.effect_noise((32, 32), 64).convert("RGBA")
        assert call_within(lambda: client.lookup_image(_encoded(noise, "PNG"))) == []
        with pytest.raises(InvalidArgument, match="image"):
            client.lookup_image(b"not an image")


def test_another_tenant_cannot_look_up_this_tenant_s_images(real_stack, delivered, tmp_path):
    job_id, artifact = delivered
    _, other_key = add_key(real_stack.keys_file, "another-studio")
    with Client(real_stack.address, other_key) as other:
        matches = within(_retrying_until_the_key_is_read(other, artifact.data), JOB_SECONDS)
    assert matches == [[]]
    path = tmp_path / "mine.png"
    path.write_bytes(artifact.data)
    assert cli_main(["lookup", str(path), "--gateway", real_stack.address, "--api-key", other_key]) == 1
    assert cli_main(["lookup", str(path), "--gateway", real_stack.address, "--api-key", real_stack.api_key]) == 0


def _retrying_until_the_key_is_read(client: Client, data: bytes):
    """The gateway reloads its keys file when it changes: ask until the new key is known."""
    while True:
        try:
            yield client.lookup_image(data)
            return
        except Unauthenticated:
            time.sleep(0.2)
