"""ListJobs' rules at the edge: page sizes and page tokens (AIP-158).

A page token names the history entry the previous page ended after (services.common.store.history).
It is opaque to clients and bound to the tenant and the filters it was issued for: a checksum
over both and the position makes a token that was edited, truncated, or sent with other
filters or by another tenant INVALID_ARGUMENT. The checksum is not what keeps tenants apart:
a page reads only the caller's own history, whatever the token says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from services.common.store import HistoryFilter, Position
from services.gateway.errors import InvalidRequest
from services.gateway.validation import Violation

DEFAULT_PAGE_SIZE = 50  # page_size 0
MAX_PAGE_SIZE = 1000  # a larger page_size is served as this (AIP-158: coerce, do not refuse)
_VERSION = "1"


@dataclass(frozen=True)
class HistoryQuery:
    """A ListJobs request, checked: its page size as served, its token as sent, its filter."""

    page_size: int
    page_token: str
    where: HistoryFilter


def page_size(asked: int, out: list[Violation]) -> int:
    if asked < 0:
        out.append(("page_size", f"must not be negative, got {asked} (0 means {DEFAULT_PAGE_SIZE})"))
        return DEFAULT_PAGE_SIZE
    return min(asked or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _checksum(tenant: str, where: HistoryFilter, created_ms: int, job_id: str) -> str:
    scope = repr((tenant, sorted(where.states), sorted(where.kinds), where.created_after, where.created_before))
    return hashlib.sha256(f"{scope}\n{created_ms}:{job_id}".encode()).hexdigest()[:16]


def encode_token(tenant: str, where: HistoryFilter, position: Position) -> str:
    text = f"{_VERSION}:{position.created_ms}:{position.job_id}:"
    text += _checksum(tenant, where, position.created_ms, position.job_id)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(tenant: str, where: HistoryFilter, token: str) -> Position:
    """The position a token names; InvalidRequest on `page_token` for anything this gateway
    did not issue to this tenant for these filters."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, ms, job_id, checksum = text.split(":")
        position = Position(int(ms), job_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest([("page_token", "not a page token of ListJobs (pass next_page_token as it came)")]) \
            from None
    if version != _VERSION or checksum != _checksum(tenant, where, position.created_ms, position.job_id):
        raise InvalidRequest([("page_token", "not issued for this caller and these filters: send the same "
                                             "states, kinds and creation bounds as the first page")])
    return position
