"""Verify an Atelier webhook on the receiving side (docs/API.md, "Webhooks").

Deliveries are signed per Standard Webhooks: `webhook-signature` holds one or more
`v1,<base64 HMAC-SHA256>` of `<webhook-id>.<webhook-timestamp>.<raw body>`, one per secret the
tenant has (two while a secret is being rotated). Pass the raw body, before any JSON parsing:

    from clients.webhooks import WebhookVerificationError, verify

    try:
        event = verify(request_body, request_headers, "whsec_...")
    except WebhookVerificationError:
        return 400
    if seen(request_headers["webhook-id"]): return 200    # retries carry the same id
    handle(event["type"], event["data"])
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 5 * 60


class WebhookVerificationError(ValueError):
    """The delivery is not signed by any of the given secrets, or is too old or too new."""


def _key(secret: str) -> bytes:
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing header {name}")


def verify(body: bytes | str, headers: Mapping[str, str], secrets: str | Iterable[str], *,
           tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS, now: float | None = None) -> dict[str, Any]:
    """The delivery's JSON (`type`, `timestamp`, `data`) if one of its signatures is one of
    `secrets`' and its timestamp is within `tolerance_seconds` of `now`; else
    WebhookVerificationError. The tolerance refuses a captured delivery replayed later."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not a Unix time") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_seconds:
        raise WebhookVerificationError(f"webhook-timestamp is {now - timestamp:+.0f} s off this clock")
    signed = f"{msg_id}.{timestamp}.".encode() + raw
    keys = [_key(secrets)] if isinstance(secrets, str) else [_key(s) for s in secrets]
    expected = [base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()) for k in keys]
    for candidate in _header(headers, "webhook-signature").split():
        version, _, value = candidate.partition(",")
        if version == "v1" and any(hmac.compare_digest(value.encode(), e) for e in expected):
            return json.loads(raw)
    raise WebhookVerificationError("no signature matches the given secrets")
