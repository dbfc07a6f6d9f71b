"""One HTTP request as the `grpc.ServicerContext` the servicers expect, and their refusals as
HTTP answers.

The servicers (services/gateway/servicers.py) authenticate, convert and call the job service;
the HTTP edge calls the very same methods with this context, so keys, tenants, quotas,
validation and idempotency cannot differ between the two edges. A refusal the servicer raises
with `abort_with_status` becomes a :class:`Refused` carrying the google.rpc status, which
answers as AIP-193 JSON with the HTTP code of the gRPC one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

# The HTTP status of each gRPC code, as google.rpc.Code documents it (and grpc-gateway maps it).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


class Refused(Exception):
    """A call the servicer refused: the google.rpc status it answered with."""

    def __init__(self, status: status_pb2.Status, http_status: int | None = None):
        super().__init__(status.message)
        self.status = status
        self._http_status = http_status  # where HTTP says more than the gRPC code (413)

    @classmethod
    def of(cls, code: grpc.StatusCode, message: str, *details, http_status: int | None = None) -> Refused:
        status = status_pb2.Status(code=code.value[0], message=message)
        for detail in details:
            status.details.add().Pack(detail)
        return cls(status, http_status)

    @property
    def code(self) -> grpc.StatusCode:
        return _BY_VALUE.get(self.status.code, grpc.StatusCode.UNKNOWN)

    @property
    def http_status(self) -> int:
        return self._http_status or HTTP_STATUS[self.code]

    def retry_after_seconds(self) -> int | None:
        """Whole seconds of the status' RetryInfo (the `Retry-After` header), if it has one."""
        for detail in self.status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return max(1, math.ceil(info.retry_delay.ToNanoseconds() / 1e9))
        return None

    def body(self) -> dict:
        """AIP-193's error JSON: `{"error": {code, status, message, details}}`; field violations
        keep the request's field paths, as over gRPC."""
        details = [json_format.MessageToDict(d) for d in self.status.details]
        return {"error": {"code": self.http_status, "status": self.code.name, "message": self.status.message,
                          "details": details}}


def invalid(field: str, description: str, http_status: int | None = None) -> Refused:
    """INVALID_ARGUMENT naming one field, as the gateway's validation words it."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    return Refused.of(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {field}",
                      error_details_pb2.BadRequest(field_violations=[violation]), http_status=http_status)


def not_found(message: str) -> Refused:
    return Refused.of(grpc.StatusCode.NOT_FOUND, message)


class HttpCallContext:
    """The parts of `grpc.ServicerContext` the servicers use, for one HTTP request."""

    def __init__(self, authorization: str | None, peer: str = ""):
        self._metadata = (("authorization", authorization),) if authorization else ()
        self._peer = peer
        self._active = threading.Event()
        self._active.set()
        self._callbacks: list[Callable[[], None]] = []
        self._code: grpc.StatusCode | None = None

    def invocation_metadata(self):
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def is_active(self) -> bool:
        return self._active.is_set()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self._callbacks.append(callback)
        return True

    def time_remaining(self) -> float | None:
        return None

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        pass

    def abort_with_status(self, status: grpc.Status):
        self._code = status.code
        for key, value in status.trailing_metadata or ():
            if key == "grpc-status-details-bin":
                raise Refused(status_pb2.Status.FromString(value))
        raise Refused.of(status.code, status.details)

    def abort(self, code: grpc.StatusCode, details: str):
        self._code = code
        raise Refused.of(code, details)

    def end(self) -> None:
        """The client left or the answer is complete: streams stop and callbacks run, as gRPC's do."""
        if not self._active.is_set():
            return
        self._active.clear()
        for callback in self._callbacks:
            callback()
