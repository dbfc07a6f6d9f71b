"""API keys: each maps to a tenant, and only a hash of it is ever stored.

A key reads `atk_<key id>_<secret>`. The keys file (`ATELIER_API_KEYS_FILE`) is JSON,
`{"keys": [{"id": ..., "tenant": ..., "sha256": ..., "created": ...}], "policies": {...}}`, holding
the sha256 of each whole key and, beside them, each tenant's content policy (when it has its own:
services.common.policy.policies). The secret is 256 random bits, so a fast hash is safe here (a
slow password hash guards low-entropy secrets; these are not). The key id finds the
entry, the hash is compared in constant time, and the file is re-read when it changes,
so keys added or revoked while the gateway runs take effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.common.watched_file import WatchedFile

PREFIX = "atk"


class KeyFileError(ValueError):
    """The keys file cannot be read as a keys file."""


@dataclass(frozen=True)
class KeyEntry:
    id: str
    tenant: str
    sha256: str
    created: str = ""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def new_key() -> tuple[str, str]:
    """(key id, key): a fresh key, shown to its owner once and never stored."""
    kid = secrets.token_hex(6)
    return kid, f"{PREFIX}_{kid}_{secrets.token_urlsafe(32)}"


def read_keys_file(path: Path) -> tuple[dict[str, KeyEntry], dict[str, Any]]:
    """(key id -> entry, tenant -> policy document); a missing file holds neither."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}, {}
    try:
        data = json.loads(text)
        entries = [KeyEntry(**e) for e in data.get("keys", [])]
        policies = data.get("policies", {})
        if not isinstance(policies, dict):
            raise TypeError("'policies' must map tenants to policies")
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise KeyFileError(f"{path}: not an Atelier keys file ({exc})") from None
    return {e.id: e for e in entries}, policies


def read_keys(path: Path) -> dict[str, KeyEntry]:
    """Key id -> entry; a missing file holds no keys."""
    return read_keys_file(path)[0]


def write_keys(path: Path, entries: dict[str, KeyEntry]) -> None:
    """Replace the keys atomically (the tenants' policies kept), readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    policies = read_keys_file(path)[1]
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    document: dict[str, Any] = {"keys": [asdict(e) for e in entries.values()]}
    if policies:
        document["policies"] = policies
    body = json.dumps(document, indent=2) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)


def add_key(path: Path, tenant: str) -> tuple[str, str]:
    """Create a key for `tenant` in the keys file; returns (key id, key)."""
    if not tenant or len(tenant) > 128:
        raise ValueError("a tenant name of 1 to 128 characters is needed")
    entries = read_keys(path)
    kid, key = new_key()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries[kid] = KeyEntry(id=kid, tenant=tenant, sha256=hash_key(key), created=created)
    write_keys(path, entries)
    return kid, key


def revoke_key(path: Path, kid: str) -> bool:
    entries = read_keys(path)
    if entries.pop(kid, None) is None:
        return False
    write_keys(path, entries)
    return True


class KeyRing:
    """Answers "which tenant owns this key?" (and "what is its content policy document?") from the
    keys file, reloading it on change."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._file = WatchedFile(self.path, read_keys_file, ({}, {}))

    def policy_document(self, tenant: str) -> Any:
        """The tenant's entry of the file's `policies` (None: it has none)."""
        return self._file.current()[1].get(tenant)

    def tenant(self, key: str) -> str | None:
        kid = key_id(key)
        if kid is None:
            return None
        entry = self._file.current()[0].get(kid)
        if entry is None or not hmac.compare_digest(entry.sha256, hash_key(key)):
            return None
        return entry.tenant


def bearer_token(metadata) -> str | None:
    """The token of an `authorization: Bearer <token>` metadata entry."""
    for name, value in metadata or ():
        if name.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
