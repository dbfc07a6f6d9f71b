"""gRPC status with `google.rpc` details for the gateway's refusals."""

from __future__ import annotations

import math

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.gateway.errors import InvalidRequest, JobNotFound, Overloaded, PromptRefused, Unauthenticated, Unavailable


def _status(code: int, message: str, *details) -> grpc.Status:
    st = status_pb2.Status(code=code, message=message)
    for d in details:
        st.details.add().Pack(d)
    return rpc_status.to_status(st)


def _bad_request(violations: list[tuple[str, str]]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations]
    )


def invalid_argument(violations: list[tuple[str, str]]) -> grpc.Status:
    names = ", ".join(dict.fromkeys(f for f, _ in violations))
    return _status(code_pb2.INVALID_ARGUMENT, f"invalid request: {names}", _bad_request(violations))


def unparseable(type_name: str, field: str, reason: str) -> grpc.Status:
    """Request bytes that are not a `type_name`; with a field violation when the bytes show the field."""
    message = f"the request is not a valid {type_name}: {field + ': ' if field else ''}{reason}"
    details = (_bad_request([(field, reason)]),) if field else ()
    return _status(code_pb2.INVALID_ARGUMENT, message, *details)


# google.rpc.ErrorInfo of a refused prompt: `reason` for programs, the concept in `metadata`.
ERROR_DOMAIN = "atelier.v1"
PROMPT_REFUSED = "CONTENT_POLICY_PROMPT_REFUSED"


def prompt_refused(exc: PromptRefused) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=PROMPT_REFUSED, domain=ERROR_DOMAIN,
                                       metadata={"concept": exc.concept, "policy": exc.policy})
    violation = [(exc.field, f"refused by the content policy: {exc.concept}")]
    return _status(code_pb2.INVALID_ARGUMENT, str(exc), info, _bad_request(violation))


def _retry_info(retry_after: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(math.ceil(max(retry_after, 0.001) * 1000)) * 1_000_000)
    return error_details_pb2.RetryInfo(retry_delay=delay)


def resource_exhausted(message: str, retry_after: float) -> grpc.Status:
    return _status(code_pb2.RESOURCE_EXHAUSTED, message, _retry_info(retry_after))


def for_error(exc: Exception) -> grpc.Status | None:
    """The status answering a domain refusal, or None for anything else."""
    if isinstance(exc, InvalidRequest):
        return invalid_argument(exc.violations)
    if isinstance(exc, PromptRefused):
        return prompt_refused(exc)
    if isinstance(exc, Overloaded):
        return resource_exhausted(str(exc), exc.retry_after)
    if isinstance(exc, JobNotFound):
        # Identical for an unknown id and another tenant's: ids must not leak across tenants.
        return _status(code_pb2.NOT_FOUND, "no such job")
    if isinstance(exc, Unauthenticated):
        return _status(code_pb2.UNAUTHENTICATED, str(exc))
    if isinstance(exc, Unavailable):
        return _status(code_pb2.UNAVAILABLE, str(exc), _retry_info(exc.retry_after))
    return None
