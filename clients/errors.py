"""Python exceptions for the gateway's gRPC status codes, with their `google.rpc` details.

    try:
        client.submit("a red fox", steps=500)
    except InvalidArgument as e:
        for v in e.violations: print(v.field, v.description)
    except ResourceExhausted as e:
        time.sleep(e.retry_after or 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class AtelierError(Exception):
    """A call the gateway answered with an error status."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(AtelierError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: list[FieldViolation] = ()):
        super().__init__(message)
        self.violations = list(violations)

    def __str__(self) -> str:
        lines = [f"{self.code.name}: {self.message}"]
        lines += [f"  {v.field}: {v.description}" for v in self.violations]
        return "\n".join(lines)


class ResourceExhausted(AtelierError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # seconds, from google.rpc.RetryInfo

    def __str__(self) -> str:
        tail = f" (retry in {self.retry_after:.1f} s)" if self.retry_after is not None else ""
        return f"{self.code.name}: {self.message}{tail}"


class Unauthenticated(AtelierError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AtelierError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(AtelierError):
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(AtelierError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(AtelierError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(AtelierError):
    code = grpc.StatusCode.CANCELLED


_BY_CODE = {
    cls.code: cls
    for cls in (Unauthenticated, PermissionDenied, NotFound, Unavailable, DeadlineExceeded, Cancelled)
}


def from_rpc_error(err: grpc.RpcError) -> AtelierError:
    """The exception for a failed call, carrying its BadRequest / RetryInfo details."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    message = (err.details() if hasattr(err, "details") else None) or str(code)
    status = None
    try:
        status = rpc_status.from_call(err) if hasattr(err, "trailing_metadata") else None
    except ValueError:
        status = None
    violations: list[FieldViolation] = []
    retry_after = None
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry_after = info.retry_delay.ToNanoseconds() / 1e9
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(message, violations)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(message, retry_after)
    cls = _BY_CODE.get(code)
    return cls(message) if cls else AtelierError(message, code)

