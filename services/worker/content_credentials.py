"""The credentials stage: every image leaves signed (services/common/credentials.py).

It runs after `encode`, on the bytes that will be delivered: a PNG, JPEG or WEBP gets its
C2PA manifest embedded; raw RGBA8 rows stay as they are and their detached manifest store
goes on the chunk, for the artifact's `content_credentials`. The key is the worker's one
signer (:func:`configure`, at worker start, from `ATELIER_SIGNING_CERT_CHAIN` and
`ATELIER_SIGNING_KEY`); a process given none signs with a development chain it makes itself.
"""

from __future__ import annotations

import logging
import threading

from services.common import credentials, signing_keys
from services.common.settings import Settings
from services.worker.stages import Chunk, provenance_of

log = logging.getLogger(__name__)
_lock = threading.Lock()
_signer: credentials.Signer | None = None


def configure(settings: Settings) -> credentials.Signer:
    """The worker's signer from its settings (a development chain when none is set); raises
    signing_keys.SigningKeyError or ValueError naming what cannot sign, so a worker refuses to start."""
    global _signer
    if settings.signing_cert_chain is not None and settings.signing_key is not None:
        material = signing_keys.read(settings.signing_cert_chain, settings.signing_key)
    else:
        log.warning("no ATELIER_SIGNING_CERT_CHAIN/ATELIER_SIGNING_KEY: signing content credentials with a "
                    "development chain made for this process, which no reader trusts")
        material, _ = signing_keys.development_chain()
    signer = credentials.Signer(material.chain_pem, material.key_pem)
    with _lock:
        _signer = signer
    return signer


def signer() -> credentials.Signer:
    with _lock:
        current = _signer
    return current if current is not None else configure(Settings.from_env())


def sign(chunk: Chunk) -> None:
    key = signer()
    signed, sidecars = [], []
    for row, (data, mime) in enumerate(chunk.encoded):
        p = provenance_of(chunk, row)
        blob, sidecar = key.sign(data, mime, credentials.manifest_definition(p, p["software_version"], mime))
        signed.append((blob, mime))
        sidecars.append(sidecar)
    chunk.encoded, chunk.credentials = signed, sidecars
