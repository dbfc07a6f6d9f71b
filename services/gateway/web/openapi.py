"""The OpenAPI 3.1 document of the HTTP/JSON API, made from the route table and the .proto
descriptors, so it cannot drift from what the servicers take and answer (proto3's JSON mapping:
lowerCamelCase names, 64-bit integers as strings, enums by name, bytes as base64)."""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from services.gateway.web.routes import ARTIFACT_PATH, ROUTES, Route

TITLE = "Atelier HTTP/JSON API"
VERSION = "v1"

_F = FieldDescriptor
_INT32 = {_F.TYPE_INT32: (-(2**31), 2**31 - 1), _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
          _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1), _F.TYPE_UINT32: (0, 2**32 - 1), _F.TYPE_FIXED32: (0, 2**32 - 1)}
_INT64 = {_F.TYPE_INT64: "^-?[0-9]+$", _F.TYPE_SINT64: "^-?[0-9]+$", _F.TYPE_SFIXED64: "^-?[0-9]+$",
          _F.TYPE_UINT64: "^[0-9]+$", _F.TYPE_FIXED64: "^[0-9]+$"}
_WELL_KNOWN = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
                                 "description": "seconds with an `s`, e.g. `1.5s`"},
}
_ERROR = {
    "type": "object",
    "description": "AIP-193: the gRPC status, its HTTP code and its google.rpc details "
                   "(BadRequest field violations, RetryInfo).",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "status": {"type": "string"}, "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}}}}},
}


def document() -> dict:
    schemas: dict[str, dict] = {"Error": _ERROR}
    paths: dict[str, dict] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.verb.lower()] = _operation(route, schemas)
    paths[ARTIFACT_PATH] = {"get": _artifact_operation()}
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "The gRPC services over HTTP/JSON (docs/API.md). Authenticate with "
                                "`Authorization: Bearer <API key>`."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "security": [{"apiKey": []}],
    }


def _operation(route: Route, schemas: dict) -> dict:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
              for name in route.path_fields]
    op: dict = {"operationId": route.rpc, "summary": route.summary, "tags": [route.service]}
    if route.body:
        op["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": _message(route.request_type, schemas)}}}
        if route.rpc == "Submit":
            params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string"},
                           "description": "the request's `requestId` when the body sets none"})
    elif route.events:
        params += [
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "resume after this event id"},
            {"name": "after_event_id", "in": "query", "required": False, "schema": {"type": "string"}},
        ]
    else:
        params += [_query_parameter(f, schemas) for f in route.request_type.fields if f.name not in route.path_fields]
    op["parameters"] = params
    ok = ({"text/event-stream": {"schema": {"type": "string", "description":
                                            "`id`, `event` (the JobEvent's case) and `data` (the JobEvent as JSON)"}}}
          if route.events else {"application/json": {"schema": _message(route.response_type, schemas)}})
    op["responses"] = {"200": {"description": "OK", "content": ok}, "default": _error_response()}
    return op


def _artifact_operation() -> dict:
    return {
        "operationId": "GetArtifact", "summary": "An artifact's file (PNG, JPEG, WEBP or raw RGBA)",
        "tags": ["Generation"],
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}},
                       {"name": "index", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the file", "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}, "default": _error_response()},
    }


def _error_response() -> dict:
    error = {"$ref": "#/components/schemas/Error"}
    return {"description": "a refusal", "content": {"application/json": {"schema": error}}}


def _query_parameter(field: FieldDescriptor, schemas: dict) -> dict:
    schema = _field(field, schemas)
    return {"name": field.name, "in": "query", "required": False, "schema": schema,
            **({"explode": True, "style": "form"} if field.is_repeated else {})}


def _message(message: Descriptor, schemas: dict) -> dict:
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    name = message.full_name.removeprefix("atelier.v1.").replace(".", "")
    if name not in schemas:
        schemas[name] = {}  # a placeholder first: a message may refer to itself
        schemas[name] = {"type": "object", "properties": {f.json_name: _field(f, schemas) for f in message.fields}}
    return {"$ref": f"#/components/schemas/{name}"}


def _field(field: FieldDescriptor, schemas: dict) -> dict:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value = field.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single(value, schemas)}
    single = _single(field, schemas)
    return {"type": "array", "items": single} if field.is_repeated else single


def _single(field: FieldDescriptor, schemas: dict) -> dict:
    kind = field.type
    if kind == _F.TYPE_MESSAGE:
        return _message(field.message_type, schemas)
    if kind == _F.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    if kind in _INT32:
        low, high = _INT32[kind]
        return {"type": "integer", "minimum": low, "maximum": high}
    if kind in _INT64:
        return {"type": "string", "pattern": _INT64[kind]}
    if kind in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return {"type": "number"}
    if kind == _F.TYPE_BOOL:
        return {"type": "boolean"}
    if kind == _F.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}
