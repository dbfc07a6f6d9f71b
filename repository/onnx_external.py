"""List the external-data files an ONNX model points at, without the `onnx` package.

Workers carry onnxruntime but not `onnx`, and the repository reader must see where a
model's weights live *before* ONNX Runtime opens them (a `location` of `../../etc/x` or an
absolute path would make it read outside the model folder). The ONNX file is a protobuf
`ModelProto`; this walks its wire format just deep enough to reach every `TensorProto`
(initializers, sparse initializers, tensors in node attributes, subgraphs, functions) and
reads its `external_data` entries. Large byte fields are skipped by length, never copied.

Field numbers are those of onnx/onnx.proto (stable since IR version 3).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from repository.protowire import WireFormatError, read_varint

# message -> {field number: message type of that (repeated) sub-message}
_MODEL = {7: "graph", 25: "function"}
_SCHEMA: dict[str, dict[int, str]] = {
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14
_MAX_DEPTH = 64  # subgraph nesting; a deeper file is malformed or hostile


class OnnxParseError(ValueError):
    """The bytes are not a well-formed ONNX protobuf."""


@dataclass(frozen=True)
class ExternalRef:
    tensor: str        # initializer name
    location: str      # path as written in the file, relative to the model's folder
    offset: int
    length: int | None


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    try:
        return read_varint(buf, pos, len(buf))
    except WireFormatError as err:
        raise OnnxParseError(str(err)) from None


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) for each field; length-delimited values are views."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise OnnxParseError("length-delimited field runs past the end")
            yield number, wire, buf[pos:pos + n]
            pos += n
        else:
            raise OnnxParseError(f"unsupported protobuf wire type {wire}")
    if pos != len(buf):
        raise OnnxParseError("truncated message")


def _tensor(buf: memoryview) -> ExternalRef | None:
    name, external, entries = "", False, {}
    for number, wire, value in _fields(buf):
        if number == _TENSOR_NAME and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif number == _TENSOR_LOCATION and wire == 0:
            external = value == 1
        elif number == _TENSOR_EXTERNAL and wire == 2:
            key = val = ""
            for n2, w2, v2 in _fields(value):
                if w2 == 2 and n2 in (1, 2):
                    text = bytes(v2).decode("utf-8", "replace")
                    key, val = (text, val) if n2 == 1 else (key, text)
            entries[key] = val
    if not external:
        return None
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise OnnxParseError(f"tensor {name!r}: external offset/length is not an integer") from None
    return ExternalRef(name, entries.get("location", ""), offset, length)


def _walk(kind: str, buf: memoryview, depth: int) -> Iterator[ExternalRef]:
    if depth > _MAX_DEPTH:
        raise OnnxParseError("graphs nested too deeply")
    if kind == "tensor":
        ref = _tensor(buf)
        if ref is not None:
            yield ref
        return
    schema = _SCHEMA[kind]
    for number, wire, value in _fields(buf):
        if wire == 2 and number in schema:
            yield from _walk(schema[number], value, depth + 1)


def external_refs(model: bytes) -> list[ExternalRef]:
    """Every tensor stored outside `model` (the bytes of an .onnx file)."""
    buf = memoryview(model)
    refs: list[ExternalRef] = []
    for number, wire, value in _fields(buf):
        if wire == 2 and number in _MODEL:
            refs.extend(_walk(_MODEL[number], value, 1))
    return refs
