"""The protobuf wire format's base-128 varint, for code that reads protobuf bytes without a generated parser."""

from __future__ import annotations

MAX_VARINT_BYTES = 10  # a 64-bit value


class WireFormatError(ValueError):
    """Bytes that are not a well-formed protobuf varint."""


def read_varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at buf[pos:end]."""
    value = shift = 0
    for i in range(pos, min(end, pos + MAX_VARINT_BYTES)):
        value |= (buf[i] & 0x7F) << shift
        if not buf[i] & 0x80:
            return value, i + 1
        shift += 7
    if end - pos >= MAX_VARINT_BYTES:
        raise WireFormatError(f"a varint longer than {MAX_VARINT_BYTES} bytes at byte {pos}")
    raise WireFormatError("truncated: the bytes end inside a varint")
