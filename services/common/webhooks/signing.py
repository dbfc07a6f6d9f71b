"""The Standard Webhooks signature (standardwebhooks.com): headers `webhook-id`,
`webhook-timestamp` and `webhook-signature`, the last `v1,<base64 HMAC-SHA256>` of
`<id>.<timestamp>.<body>` under each of the tenant's secrets, space-separated, so a receiver
that knows any one of them accepts the delivery while a secret is being rotated."""

from __future__ import annotations

import base64
import hashlib
import hmac

from services.common.webhooks.config import secret_key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt (its timestamp is the attempt's, so retries are signed afresh)."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(signature(s, msg_id, int(timestamp), body) for s in secrets),
    }
