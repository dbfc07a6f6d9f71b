"""Every delivered image carries a C2PA manifest signed with the service's key
(services/worker/content_credentials.py): read back with the c2pa library's Reader, as a
verifier would. A tampered file fails; raw RGBA8 rows carry a detached store that binds them."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from services.common import credentials, signing_keys
from services.common.jobs import JobSpec, PromptSpec
from services.common.settings import Settings, SettingsError
from services.worker import content_credentials
from tests.services import toy_runtime


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The worker signs with a chain of our own making, whose CA this test trusts."""
    folder = tmp_path_factory.mktemp("signing")
    chain_file, key_file, ca_file = signing_keys.write_development_chain(folder)
    content_credentials.configure(Settings.from_env({}, signing_cert_chain=chain_file, signing_key=key_file))
    yield ca_file.read_bytes()
    content_credentials.configure(Settings.from_env({}))


def made(output_format: str, seed: int = 11) -> tuple[dict, bytes]:
    spec = JobSpec(prompts=(PromptSpec("a red apple", "blurry", "flat"),), seeds=(seed,), output_format=output_format,
                   sampler="euler", steps=4, guidance_scale=3.0)
    ((data, blob),) = toy_runtime.made_alone(spec)
    return data, blob


@pytest.mark.parametrize("output_format, mime", [("png", "image/png"), ("jpeg", "image/jpeg"),
                                                 ("webp", "image/webp")])
def test_a_delivered_file_carries_a_signed_manifest_naming_the_model_and_its_provenance(chain, output_format, mime):
    data, blob = made(output_format)
    found = credentials.verify(blob, mime, trust_anchors_pem=chain)
    assert found.state == "Trusted" and found.intact, found.failures
    assert found.digital_source_type == credentials.TRAINED_ALGORITHMIC_MEDIA
    assert found.provenance == data["provenance"]
    (generator,) = found.manifest["claim_generator_info"]
    assert generator["name"] == "Atelier" and generator["version"] == data["provenance"]["software_version"]
    (action,) = [a for a in found.manifest["assertions"] if a["label"].startswith("c2pa.actions")][0]["data"]["actions"]
    p = data["provenance"]
    assert action["softwareAgent"]["name"] == f"{p['model_name']}/{p['model_version']}"
    assert action["parameters"]["model_sha256"] == p["model_sha256"]
    assert found.manifest["signature_info"]["common_name"].endswith("content credentials")
    assert Image.open(io.BytesIO(blob)).size == (data["width"], data["height"])  # still an ordinary image


@pytest.mark.parametrize("seed", [2**63, 2**64 - 1])
def test_a_seed_past_the_signed_64_bit_range_is_signed_and_read_back(chain, seed):
    """Seeds are uint64 and the service draws them from the whole range; C2PA's JSON numbers stop
    at 2**63 - 1 (such a job failed before the seed was written as a string)."""
    data, blob = made("png", seed=seed)
    found = credentials.verify(blob, "image/png", trust_anchors_pem=chain)
    assert found.intact and found.provenance["seed"] == seed
    assert found.provenance == data["provenance"]


def test_without_the_ca_the_signature_still_checks_but_is_not_trusted(chain):
    _, blob = made("png")
    found = credentials.verify(blob, "image/png")
    assert found.intact and found.state == "Valid"
    assert [f["code"] for f in found.failures] == ["signingCredential.untrusted"]


@pytest.mark.parametrize("output_format, mime", [("png", "image/png"), ("jpeg", "image/jpeg")])
def test_a_tampered_file_fails_verification(chain, output_format, mime):
    _, blob = made(output_format)
    assert credentials.verify(blob, mime).intact
    # Other pixels in the same container, the manifest kept: what an edit that keeps the metadata does.
    edited = bytearray(blob)
    marker = b"IDAT" if output_format == "png" else b"\xff\xda"  # the first image data segment
    at = blob.index(marker) + 16
    edited[at] ^= 0x55
    found = credentials.verify(bytes(edited), mime, trust_anchors_pem=chain)
    assert not found.intact and found.state == "Invalid"
    assert any("mismatch" in f["code"] for f in found.failures), found.failures


def test_a_file_re_saved_without_its_manifest_has_no_credentials(chain):
    _, blob = made("png")
    out = io.BytesIO()
    Image.open(io.BytesIO(blob)).save(out, "PNG")
    with pytest.raises(credentials.NoCredentials):
        credentials.verify(out.getvalue(), "image/png")


def test_raw_pixels_stay_raw_and_their_detached_store_binds_them(chain):
    data, blob = made("raw_rgba8")
    assert len(blob) == data["width"] * data["height"] * 4  # the rows, nothing added
    store = base64.b64decode(data["content_credentials"])
    found = credentials.verify(blob, "application/x-atelier-rgba8", store, chain)
    assert found.state == "Trusted" and found.provenance == data["provenance"]
    flipped = bytes([blob[0] ^ 1]) + blob[1:]
    assert not credentials.verify(flipped, "application/x-atelier-rgba8", store, chain).intact


def test_files_carry_their_manifest_inside_and_no_detached_store(chain):
    data, _ = made("png")
    assert data["content_credentials"] == ""


def test_a_half_configured_signing_key_is_refused():
    with pytest.raises(SettingsError, match="ATELIER_SIGNING_CERT_CHAIN and ATELIER_SIGNING_KEY"):
        Settings.from_env({"ATELIER_SIGNING_KEY": "key.pem"})


def test_a_missing_or_non_pem_key_names_the_file(tmp_path):
    chain_file, key_file, _ = signing_keys.write_development_chain(tmp_path)
    with pytest.raises(signing_keys.SigningKeyError, match="nope.pem cannot be read"):
        signing_keys.read(chain_file, tmp_path / "nope.pem")
    (tmp_path / "garbage.pem").write_text("hello")
    with pytest.raises(signing_keys.SigningKeyError, match="garbage.pem is not PEM"):
        signing_keys.read(tmp_path / "garbage.pem", key_file)


def test_a_key_that_does_not_match_its_certificate_cannot_sign(tmp_path):
    one, _ = signing_keys.development_chain()
    other, _ = signing_keys.development_chain()
    with pytest.raises(ValueError, match="cannot sign"):
        credentials.Signer(one.chain_pem, other.key_pem)


def test_the_development_chain_is_made_once_and_its_key_is_private(tmp_path):
    first = signing_keys.write_development_chain(tmp_path)
    again = signing_keys.write_development_chain(tmp_path)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[1].stat().st_mode & 0o077 == 0
