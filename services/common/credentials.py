"""Content credentials: a C2PA manifest, signed with the service's key, on every image.

The manifest (C2PA 2.x, made and read with the `c2pa-python` library) says who made the
image and how: the claim generator (Atelier and its version), one `c2pa.created` action
whose digital source type is IPTC's `trainedAlgorithmicMedia` and whose software agent is
the model (name/version, its manifest sha256), and the artifact's whole provenance as the
assertion `dev.atelier.provenance`. PNG, JPEG and WEBP carry it inside the file (the
signature's hard binding covers every other byte, so an edited file fails verification).
Raw RGBA8 rows cannot hold it: their manifest store is detached (a sidecar bound to the
raw bytes by a data hash) and travels in `Artifact.content_credentials`.

No thumbnail is embedded: at the service's image sizes the library's thumbnail is larger
than the image and its making took 0.4 s of a 1 ms signature.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import c2pa

PROVENANCE_LABEL = "dev.atelier.provenance"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
RAW_FORMAT = "application/octet-stream"  # how the library is told to bind a sidecar to raw bytes
EMBEDDING = {"image/png", "image/jpeg", "image/webp"}


def _context(**extra: Any) -> c2pa.Context:
    return c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}, **extra})


def manifest_definition(provenance: dict[str, Any], software_version: str, mime_type: str) -> dict[str, Any]:
    """The manifest of one image with this provenance (the fields of `atelier.v1.Provenance`)."""
    model = provenance.get("model_name") or provenance.get("upscaler_name", "")
    version = provenance.get("model_version") or provenance.get("upscaler_version", "")
    sha256 = provenance.get("model_sha256") or provenance.get("upscaler_sha256", "")
    return {
        "claim_generator_info": [{"name": "Atelier", "version": software_version}],
        "title": f"{model}/{version} seed {provenance.get('seed', 0)}",
        "format": mime_type,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [{
                "action": "c2pa.created",
                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": {"name": f"{model}/{version}", "version": software_version},
                "parameters": {"model_name": model, "model_version": version, "model_sha256": sha256},
            }]}},
            {"label": PROVENANCE_LABEL, "data": _with_seed_as(str, provenance)},
        ],
    }


def _with_seed_as(kind: type, provenance: dict[str, Any]) -> dict[str, Any]:
    """The provenance with its uint64 seed as `kind`. C2PA's JSON numbers are signed 64-bit (the
    library refuses a seed of 2**63 or more), so the assertion carries the seed as proto3's JSON
    mapping writes a 64-bit integer, a decimal string; a reader gets it back as a number."""
    return {**provenance, "seed": kind(provenance["seed"])} if "seed" in provenance else provenance


class Signer:
    """Signs images with one key and chain (services/common/signing_keys.py). Thread-safe: each
    image gets its own builder; the library's signer is shared."""

    def __init__(self, chain_pem: bytes, key_pem: bytes):
        info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain_pem, key_pem, None)
        self._context = _context()
        try:
            self._signer = c2pa.Signer.from_info(info)
            # A key that is not the certificate's is only found out by signing: find it out at start.
            self.sign(b"\0" * 4, RAW_FORMAT, manifest_definition({}, "0", RAW_FORMAT))
        except c2pa.C2paError as err:
            raise ValueError(f"the signing key and certificate chain cannot sign ES256: {err}") from None

    def sign(self, data: bytes, mime_type: str, manifest: dict[str, Any]) -> tuple[bytes, bytes]:
        """(the file with its manifest embedded, b"") for PNG, JPEG and WEBP; (``data`` unchanged,
        the detached manifest store) for raw pixels."""
        builder = c2pa.Builder(json.dumps(manifest), context=self._context)
        out = io.BytesIO()
        if mime_type in EMBEDDING:
            builder.sign(self._signer, mime_type, io.BytesIO(data), out)
            return out.getvalue(), b""
        builder.set_no_embed()
        store = builder.sign(self._signer, RAW_FORMAT, io.BytesIO(data), out)
        return data, bytes(store)


@dataclass(frozen=True)
class Verification:
    """What a reader found: C2PA's validation state (`Invalid`, `Valid`, or `Trusted` when the
    signer chains to a trusted CA), the failures it listed, and the active manifest."""

    state: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        """The signature and every hash check out; the signer's trust is a separate matter."""
        return self.state in ("Valid", "Trusted") and not [f for f in self.failures if not _about_trust(f)]

    @property
    def provenance(self) -> dict[str, Any]:
        for assertion in self.manifest.get("assertions", []):
            if assertion.get("label") == PROVENANCE_LABEL:
                return _with_seed_as(int, assertion.get("data", {}))
        return {}

    @property
    def digital_source_type(self) -> str:
        for assertion in self.manifest.get("assertions", []):
            if assertion.get("label", "").startswith("c2pa.actions"):
                for action in assertion.get("data", {}).get("actions", []):
                    if action.get("action") == "c2pa.created":
                        return action.get("digitalSourceType", "")
        return ""


def _about_trust(failure: dict[str, Any]) -> bool:
    return str(failure.get("code", "")).startswith("signingCredential.untrusted")


class NoCredentials(ValueError):
    """The file carries no content credentials."""


def verify(data: bytes, mime_type: str, sidecar: bytes = b"", trust_anchors_pem: bytes = b"") -> Verification:
    """Read and check the credentials of ``data`` (its embedded manifest, or ``sidecar`` for raw
    pixels), trusting signers that chain to ``trust_anchors_pem`` when given."""
    extra = {"trust": {"trust_anchors": trust_anchors_pem.decode()}, "verify": {"verify_trust": True}} \
        if trust_anchors_pem else {}
    fmt = mime_type if mime_type in EMBEDDING else RAW_FORMAT
    try:
        reader = c2pa.Reader(fmt, io.BytesIO(data), sidecar or None, context=_context(**extra))
    except c2pa.C2paError as err:
        if "ManifestNotFound" in type(err).__name__ or "no JUMBF" in str(err) or "not found" in str(err).lower():
            raise NoCredentials("the image carries no content credentials") from None
        return Verification("Invalid", [{"code": "manifest.unreadable", "explanation": str(err)}])
    with reader:
        results = reader.get_validation_results() or {}
        failures = list(results.get("activeManifest", {}).get("failure", []))
        return Verification(reader.get_validation_state() or "Invalid", failures, reader.get_active_manifest() or {})
