"""Request bytes that are not the method's message: INVALID_ARGUMENT naming the field, never INTERNAL.

gRPC Python answers a request deserializer that raises with INTERNAL ("Exception
deserializing request!") before any servicer code runs. The deserializers here never
raise: bytes that do not parse (invalid UTF-8 in a string field, a truncated message,
garbage) become an :class:`Unparseable` request, and the handler answers it with
INVALID_ARGUMENT. Which field is at fault is found by walking the protobuf wire format
(tag, wire type, payload) along the message's descriptor, since the parser's own error
names only the message type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from repository.protowire import WireFormatError, read_varint
from services.gateway import status

MAX_DEPTH = 100  # the protobuf parsers' own nesting limit
MAX_FIELD_NUMBER = 2**29 - 1

_VARINT, _I64, _LEN, _START_GROUP, _END_GROUP, _I32 = range(6)
_FIXED_SIZE = {
    FieldDescriptor.TYPE_DOUBLE: 8, FieldDescriptor.TYPE_FIXED64: 8, FieldDescriptor.TYPE_SFIXED64: 8,
    FieldDescriptor.TYPE_FLOAT: 4, FieldDescriptor.TYPE_FIXED32: 4, FieldDescriptor.TYPE_SFIXED32: 4,
}
_NOT_PACKABLE = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_MESSAGE,
                 FieldDescriptor.TYPE_GROUP)


@dataclass(frozen=True)
class Unparseable:
    """A request whose bytes did not parse: the message type, the field at fault ("" if unseen), why."""

    type_name: str
    field: str
    reason: str


def deserializer(message_class) -> Callable[[bytes], object]:
    """`message_class.FromString` that returns an :class:`Unparseable` instead of raising."""
    descriptor = message_class.DESCRIPTOR

    def deserialize(data: bytes):
        try:
            return message_class.FromString(data)
        except Exception:  # noqa: BLE001 - whatever the parser raises, the fault is in the client's bytes
            field, reason = diagnose(descriptor, data)
            return Unparseable(descriptor.full_name, field, reason)

    return deserialize


class _Bad(Exception):
    """A fault and the field path it is reported on."""

    def __init__(self, field: str, reason: str):
        super().__init__(field, reason)
        self.field, self.reason = field, reason


class _Short(Exception):
    """A fault in the bytes of the field being read; the caller knows which field that is."""


def diagnose(descriptor: Descriptor, data: bytes) -> tuple[str, str]:
    """(field path, reason) of the first fault in `data` read as a `descriptor` message."""
    try:
        _walk(descriptor, data, 0, len(data), "", depth=0, group=None)
    except _Bad as bad:
        return bad.field, bad.reason
    return "", f"not a valid {descriptor.full_name}"


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    try:
        return read_varint(data, pos, end)
    except WireFormatError as err:
        raise _Short(str(err)) from None


def _skip(pos: int, size: int, end: int) -> int:
    if pos + size > end:
        raise _Short(f"truncated: {size} bytes announced, {end - pos} left")
    return pos + size


def _path(prefix: str, field: FieldDescriptor, seen: Counter) -> str:
    name = prefix + field.name
    if field.is_repeated and not _is_map(field):
        seen[field.number] += 1
        if field.type in _NOT_PACKABLE:
            return f"{name}[{seen[field.number] - 1}]"
    return name


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _walk(descriptor: Descriptor | None, data: bytes, pos: int, end: int, prefix: str, *, depth: int,
          group: int | None) -> int:
    """Check one message's fields in data[pos:end]; returns where it ended (a group's end tag).

    A fault in a field the contract knows is reported on its path; one in a field it lacks
    (which the parser would keep as an unknown field) on the enclosing message, by number.
    """
    parent = prefix.rstrip(".")
    if depth > MAX_DEPTH:
        raise _Bad(parent, f"nested more than {MAX_DEPTH} messages deep")
    seen: Counter = Counter()
    while pos < end:
        try:
            key, pos = _varint(data, pos, end)
        except _Short as short:
            raise _Bad(parent, f"a field's tag: {short}") from None
        number, wire = key >> 3, key & 7
        if not 1 <= number <= MAX_FIELD_NUMBER:
            raise _Bad(parent, f"a field numbered {number} (numbers are 1 to {MAX_FIELD_NUMBER})")
        field = descriptor.fields_by_number.get(number) if descriptor is not None else None
        path, note = (_path(prefix, field, seen), "") if field is not None else (parent, f"field number {number}: ")
        try:
            if wire == _VARINT:
                _, pos = _varint(data, pos, end)
            elif wire == _I64:
                pos = _skip(pos, 8, end)
            elif wire == _I32:
                pos = _skip(pos, 4, end)
            elif wire == _LEN:
                length, pos = _varint(data, pos, end)
                stop = _skip(pos, length, end)
                if field is not None:
                    _payload(field, data, pos, stop, path, depth)
                pos = stop
            elif wire == _START_GROUP:
                pos = _walk(None, data, pos, end, prefix, depth=depth + 1, group=number)
            elif wire == _END_GROUP:
                if group != number:
                    raise _Short("a group end without its start")
                return pos
            else:
                raise _Short(f"wire type {wire} does not exist")
        except _Short as short:
            raise _Bad(path, f"{note}{short}") from None
    if group is not None:
        raise _Bad(parent, f"field number {group}: truncated: a group without its end")
    return pos


def _payload(field: FieldDescriptor, data: bytes, pos: int, stop: int, path: str, depth: int) -> None:
    """A length-delimited payload of a field the contract knows."""
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            data[pos:stop].decode("utf-8")
        except UnicodeDecodeError as err:
            raise _Short(f"not valid UTF-8 (byte {err.start} of the string)") from None
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        if _is_map(field):
            try:
                _walk(field.message_type, data, pos, stop, "", depth=depth + 1, group=None)
            except _Bad as bad:
                raise _Short(f"an entry's {bad.field or 'bytes'}: {bad.reason}") from None
        else:
            _walk(field.message_type, data, pos, stop, path + ".", depth=depth + 1, group=None)
    elif field.is_repeated and field.type not in _NOT_PACKABLE:
        size = _FIXED_SIZE.get(field.type)
        if size is not None:
            if (stop - pos) % size:
                raise _Short(f"packed {size}-byte values in {stop - pos} bytes")
            return
        while pos < stop:
            _, pos = _varint(data, pos, stop)


# --- handlers


def _refuse(request, context) -> None:
    if isinstance(request, Unparseable):
        context.abort_with_status(status.unparseable(request.type_name, request.field, request.reason))


def _refusing_unparseable(behavior, client_streaming: bool, server_streaming: bool):
    if client_streaming:
        def checked(requests, context):
            for request in requests:
                _refuse(request, context)  # aborts the call from inside the servicer's loop
                yield request

        def streams(requests, context):
            return behavior(checked(requests, context), context)

        return streams
    if server_streaming:
        def stream(request, context):
            _refuse(request, context)
            yield from behavior(request, context)

        return stream

    def unary(request, context):
        _refuse(request, context)
        return behavior(request, context)

    return unary


_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def method_handlers(servicer, service: ServiceDescriptor) -> dict[str, grpc.RpcMethodHandler]:
    """The handlers of every method of `service`, with never-raising deserializers."""
    handlers = {}
    for method in service.methods:
        kind = (method.client_streaming, method.server_streaming)
        response = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = _HANDLER_KINDS[kind](
            _refusing_unparseable(getattr(servicer, method.name), *kind),
            request_deserializer=deserializer(message_factory.GetMessageClass(method.input_type)),
            response_serializer=response.SerializeToString,
        )
    return handlers


def add_servicer(server: grpc.Server, servicer, service: ServiceDescriptor) -> None:
    """What the generated `add_<Service>Servicer_to_server` does, with :func:`deserializer`."""
    handlers = method_handlers(servicer, service)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
