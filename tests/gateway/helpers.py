"""Raw gRPC calls for the gateway tests (the SDK has tests of its own)."""

from __future__ import annotations

import collections

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import generation_pb2_grpc, models_pb2_grpc

# Every call of a test has a deadline, so a gateway that never answers (or a stream that never
# ends) fails the test in seconds instead of hanging it.
CALL_DEADLINE_SECONDS = 20.0


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                           "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class DefaultDeadline(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Gives a call made without a timeout `seconds` to finish (a stream: to end)."""

    def __init__(self, seconds: float = CALL_DEADLINE_SECONDS):
        self.seconds = seconds

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        if d.timeout is not None:
            return d
        return _CallDetails(d.method, self.seconds, d.metadata, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)


def auth(key: str):
    return (("authorization", f"Bearer {key}"),)


class Stubs:
    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None, **kw):
        self.channel = (grpc.secure_channel(address, credentials, **kw) if credentials
                        else grpc.insecure_channel(address))
        calls = grpc.intercept_channel(self.channel, DefaultDeadline())
        self.gen = generation_pb2_grpc.GenerationStub(calls)
        self.models = models_pb2_grpc.ModelsStub(calls)

    def close(self):
        self.channel.close()


def violations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    found = {}
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            d.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def retry_delay(err: grpc.RpcError) -> float | None:
    status = rpc_status.from_call(err)
    for d in status.details:
        if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            d.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return None


def request(**fields) -> gen.GenerateRequest:
    fields.setdefault("prompt", "a red fox")
    return gen.GenerateRequest(**fields)


def kind(event: gen.JobEvent) -> str:
    return event.WhichOneof("event")
