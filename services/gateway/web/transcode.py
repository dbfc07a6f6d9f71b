"""JSON and query parameters to request messages, and messages to JSON (proto3's JSON mapping,
google.protobuf.json_format): the HTTP edge adds no conversion of its own, so a field means the
same on both edges."""

from __future__ import annotations

import json

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.gateway.web.calls import invalid
from services.gateway.web.routes import Route


def request_of(route: Route, path: dict[str, str], query: list[tuple[str, str]], body: bytes) -> Message:
    """The request message of `route`, or Refused (INVALID_ARGUMENT naming the field)."""
    request = route.new_request()
    if route.body and body.strip():
        _parse(_json_object(body), request, "body")
    if query:
        _parse(_query_object(request, query), request, "query")
    for name, value in path.items():
        setattr(request, name, value)
    return request


def to_json(message: Message) -> dict:
    """The message as proto3 JSON, fields at their default value included, so a client reads
    `state: JOB_STATE_QUEUED` or `stepsDone: 0` rather than an absent key."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _json_object(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid("body", f"is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid("body", f"must be a JSON object, not {type(value).__name__}")
    return value


def _query_object(request: Message, query: list[tuple[str, str]]) -> dict:
    """Query parameters as the JSON object they stand for: a repeated field may be given many
    times, any other once; names are the field's (`page_size`) or its JSON name (`pageSize`)."""
    fields = {f.name: f for f in request.DESCRIPTOR.fields} | {f.json_name: f for f in request.DESCRIPTOR.fields}
    out: dict[str, object] = {}
    for name, value in query:
        field = fields.get(name)
        if field is None or field.type == FieldDescriptor.TYPE_MESSAGE and not _is_timestamp(field):
            raise invalid(name, f"is not a query parameter of {request.DESCRIPTOR.name}")
        if field.is_repeated:
            out.setdefault(field.name, []).append(value)
        elif field.name in out:
            raise invalid(name, "is given more than once")
        else:
            out[field.name] = value
    return out


def _is_timestamp(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp"


def _parse(value: dict, request: Message, where: str) -> None:
    try:
        json_format.ParseDict(value, request)
    except json_format.ParseError as exc:
        raise invalid(where, str(exc)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # what ParseDict lets through
        raise invalid(where, f"cannot be read as {request.DESCRIPTOR.name}: {exc}") from None
