"""Raw gRPC calls for the gateway tests (the SDK has tests of its own)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import generation_pb2_grpc, models_pb2_grpc


def auth(key: str):
    return (("authorization", f"Bearer {key}"),)


class Stubs:
    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None = None, **kw):
        self.channel = (grpc.secure_channel(address, credentials, **kw) if credentials
                        else grpc.insecure_channel(address))
        self.gen = generation_pb2_grpc.GenerationStub(self.channel)
        self.models = models_pb2_grpc.ModelsStub(self.channel)

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
