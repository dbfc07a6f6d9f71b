"""One delivery attempt: an HTTP POST that counts as accepted only on a 2xx answer within the
timeout. Redirects are not followed (Standard Webhooks): a 3xx is a failure, like a 5xx."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    ok: bool
    reason: str  # "" when ok; else `status`, `timeout` or `connection`
    detail: str  # for the delivery's last_error


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = kind(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", target, body=body, headers={**headers, "user-agent": "atelier-webhooks/1"})
        response = conn.getresponse()
        response.read(64 * 1024)
        if 200 <= response.status < 300:
            return Answer(True, "", "")
        return Answer(False, "status", f"HTTP {response.status}")
    except TimeoutError:
        return Answer(False, "timeout", f"no answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as err:
        return Answer(False, "connection", f"{type(err).__name__}: {err}")
    finally:
        conn.close()
