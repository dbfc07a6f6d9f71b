"""An ONNX model's graph inputs with a fixed axis made free, without the `onnx` package.

The gateway opens a version's text encoder to pool token states for the prompt check
(repository/text_encoder.py). Its inputs are declared [batch, max_tokens], so every text was
run at the full length, padding included, though pooling reads only the unmasked tokens: two
thirds of the work for a short prompt. ONNX Runtime refuses a shorter input than the declared
length, so the declaration is rewritten: the named inputs' dimension at `axis` becomes a named
(free) one. Everything else in the file is copied byte for byte; the caller checks that the
model gives the same states at the shorter length before it relies on that.

Field numbers are those of onnx/onnx.proto: ModelProto.graph 7, GraphProto.input 11,
ValueInfoProto.name 1 and .type 2, TypeProto.tensor_type 1, TypeProto.Tensor.shape 2,
TensorShapeProto.dim 1, Dimension.dim_value 1 and .dim_param 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from repository.onnx_external import OnnxParseError
from repository.protowire import WireFormatError, read_varint

_LEN = 2  # the length-delimited wire type


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _raw_fields(buf: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field, start of its value, end) for each field."""
    pos = 0
    try:
        while pos < len(buf):
            start = pos
            key, pos = read_varint(buf, pos, len(buf))
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, end = read_varint(buf, pos, len(buf))
            elif wire == 1:
                end = pos + 8
            elif wire == 5:
                end = pos + 4
            elif wire == _LEN:
                n, pos = read_varint(buf, pos, len(buf))
                end = pos + n
            else:
                raise OnnxParseError(f"unsupported protobuf wire type {wire}")
            if end > len(buf):
                raise OnnxParseError("a field runs past the end")
            yield number, wire, start, pos, end
            pos = end
    except WireFormatError as err:
        raise OnnxParseError(str(err)) from None


def _rewrite(buf: bytes, number: int, change: Callable[[bytes, int], bytes | None]) -> bytes:
    """`buf` with each length-delimited field `number` replaced by change(value, its index among
    them), where that returns bytes (None: kept as it was)."""
    out, index = bytearray(), 0
    for num, wire, start, value_at, end in _raw_fields(buf):
        new = change(buf[value_at:end], index) if num == number and wire == _LEN else None
        if num == number and wire == _LEN:
            index += 1
        if new is None:
            out += buf[start:end]
        else:
            out += _varint_bytes((number << 3) | _LEN) + _varint_bytes(len(new)) + new
    return bytes(out)


def _name(value_info: bytes) -> str:
    for num, wire, _, value_at, end in _raw_fields(value_info):
        if num == 1 and wire == _LEN:
            return value_info[value_at:end].decode("utf-8", "replace")
    return ""


def free_input_axis(model: bytes, inputs: set[str], axis: int, dim_name: str) -> bytes:
    """The model with dimension `axis` of each graph input in `inputs` declared as `dim_name`."""
    found: set[str] = set()
    named = dim_name.encode()
    free_dim = _varint_bytes((2 << 3) | _LEN) + _varint_bytes(len(named)) + named  # Dimension.dim_param

    def shape(value: bytes, _: int) -> bytes:
        return _rewrite(value, 1, lambda dim, index: free_dim if index == axis else None)

    def tensor_type(value: bytes, _: int) -> bytes:
        return _rewrite(value, 2, shape)

    def value_info(value: bytes, _: int) -> bytes | None:
        name = _name(value)
        if name not in inputs:
            return None
        found.add(name)
        return _rewrite(value, 2, lambda type_, _i: _rewrite(type_, 1, tensor_type))

    out = _rewrite(model, 7, lambda graph, _: _rewrite(graph, 11, value_info))
    if found != inputs:
        raise OnnxParseError(f"the graph has no input named {sorted(inputs - found)}")
    return out
