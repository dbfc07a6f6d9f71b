"""Request bytes that are not the method's message answer INVALID_ARGUMENT, naming the field where they show it."""

import grpc
import pytest
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import models_pb2
from services.gateway.wire import Unparseable, deserializer
from tests.gateway.helpers import auth, violations

METHODS = {
    "/atelier.v1.Generation/Submit": False,
    "/atelier.v1.Generation/Generate": True,
    "/atelier.v1.Generation/Watch": True,
    "/atelier.v1.Generation/GetJob": False,
    "/atelier.v1.Generation/CancelJob": False,
    "/atelier.v1.Models/ListModels": False,
}


def varint(value: int) -> bytes:
    out = b""
    while value > 0x7F:
        out += bytes([value & 0x7F | 0x80])
        value >>= 7
    return out + bytes([value])


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (wire type 2) of the protobuf wire format."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


NOT_UTF8 = b"a \xc3\x28 fox"  # 0xC3 opens a two-byte sequence that 0x28 does not continue

# (method, request bytes, the field the answer names or "" for none)
CASES = {
    "prompt not UTF-8": ("/atelier.v1.Generation/Submit", field(4, NOT_UTF8), "prompt"),
    "prompt not UTF-8 (Generate)": ("/atelier.v1.Generation/Generate", field(4, NOT_UTF8), "prompt"),
    "a bulk variant's negative prompt not UTF-8": (
        "/atelier.v1.Generation/Submit",
        field(27, field(1, b"a cat")) + field(27, field(1, b"a dog") + field(2, NOT_UTF8)),
        "prompts[1].negative_prompt",
    ),
    "a label key not UTF-8": ("/atelier.v1.Generation/Submit", field(23, field(1, NOT_UTF8) + field(2, b"v")),
                              "labels"),
    "request id not UTF-8": ("/atelier.v1.Generation/Submit", field(1, b"\xff\xfe"), "request_id"),
    "job id not UTF-8 (Watch)": ("/atelier.v1.Generation/Watch", field(1, NOT_UTF8), "job_id"),
    "event id not UTF-8": ("/atelier.v1.Generation/Watch", field(1, b"j") + field(2, b"\x80-0"), "after_event_id"),
    "job id not UTF-8 (GetJob)": ("/atelier.v1.Generation/GetJob", field(1, NOT_UTF8), "job_id"),
    "job id not UTF-8 (CancelJob)": ("/atelier.v1.Generation/CancelJob", field(1, NOT_UTF8), "job_id"),
    "a string cut short": ("/atelier.v1.Generation/Submit", field(4, b"a red fox")[:-3], "prompt"),
    "a deadline's seconds cut short": ("/atelier.v1.Generation/Submit", field(21, bytes([8, 0x80, 0x80])),
                                       "deadline.seconds"),
    "wire type 7": ("/atelier.v1.Generation/GetJob", bytes([1 << 3 | 7, 0]), "job_id"),
    "a group without its end": ("/atelier.v1.Models/ListModels", bytes([1 << 3 | 3]), ""),
    "a group end without its start": ("/atelier.v1.Generation/GetJob", bytes([1 << 3 | 3, 2 << 3 | 4]), ""),
    "a varint of 11 bytes": ("/atelier.v1.Generation/Submit", bytes([7 << 3]) + b"\xff" * 11, "width"),
}
GARBAGE = (b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f", b"\x0b", bytes(range(256)))


def call_raw(channel: grpc.Channel, method: str, data: bytes, key: str):
    """Send `data` as the request, unserialized: the gateway's deserializer sees exactly these bytes."""
    if METHODS[method]:
        stream = channel.unary_stream(method, request_serializer=None, response_deserializer=None)
        return list(stream(data, metadata=auth(key), timeout=10))
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)(
        data, metadata=auth(key), timeout=10)


REQUEST_TYPES = (gen.GenerateRequest, gen.WatchRequest, gen.GetJobRequest, models_pb2.ListModelsRequest,
                 health_pb2.HealthCheckRequest)
FULL_REQUEST = gen.GenerateRequest(prompt="a fox", prompts=[gen.PromptVariant(prompt="a", style="b")], seeds=[1, 2],
                                   labels={"k": "v"}, deadline={"seconds": 5, "nanos": 6}, guidance_scale=1.5,
                                   init_image={"data": b"\x89PNG"}).SerializeToString()


@settings(derandomize=True, database=None, deadline=None, max_examples=1000)
@given(kind=st.sampled_from(REQUEST_TYPES),
       data=st.one_of(st.binary(max_size=48),
                      st.tuples(st.integers(0, len(FULL_REQUEST)), st.binary(max_size=4)).map(
                          lambda cut: FULL_REQUEST[: cut[0]] + cut[1])))
def test_the_deserializers_parse_what_protobuf_parses_and_explain_the_rest(kind, data):
    result = deserializer(kind)(data)
    try:
        expected = kind.FromString(data)
    except DecodeError:
        assert isinstance(result, Unparseable) and result.type_name == kind.DESCRIPTOR.full_name
        assert not result.reason.startswith("not a valid"), data  # the walk found what the parser refused
    else:
        assert result == expected


@pytest.fixture
def served(stack):
    channel = grpc.insecure_channel(stack.address)
    yield stack, channel
    channel.close()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.redis
def test_bytes_that_do_not_parse_name_their_field(served, case):
    stack, channel = served
    method, data, expected = CASES[case]
    with pytest.raises(grpc.RpcError) as err:
        call_raw(channel, method, data, stack.keys.alice)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "is not a valid atelier.v1." in err.value.details()
    assert (list(violations(err.value)) == [expected]) if expected else violations(err.value) == {}
    assert stack.queue.sent == []


@pytest.mark.redis
def test_garbage_to_every_method_is_invalid_argument_and_the_gateway_stays_up(served):
    stack, channel = served
    for method in METHODS:
        for data in GARBAGE:
            with pytest.raises(grpc.RpcError) as err:
                call_raw(channel, method, data, stack.keys.alice)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, data, err.value.details())
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.redis
def test_garbage_to_the_health_check_is_invalid_argument(served):
    stack, channel = served
    check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None)
    for data in GARBAGE:
        with pytest.raises(grpc.RpcError) as err:
            check(data, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (data, err.value.details())
    assert health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING


@pytest.mark.redis
def test_garbage_to_server_reflection_is_invalid_argument(served):
    _, channel = served
    info = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                 request_serializer=None, response_deserializer=None)
    for data in GARBAGE:
        with pytest.raises(grpc.RpcError) as err:
            list(info(iter([data]), timeout=10))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (data, err.value.details())


@pytest.mark.redis
def test_the_health_watch_stream_still_streams(served):
    _, channel = served
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
    assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
    stream.cancel()


@pytest.mark.redis
def test_valid_requests_sent_raw_are_served(served):
    stack, channel = served
    listed = models_pb2.ListModelsResponse.FromString(
        call_raw(channel, "/atelier.v1.Models/ListModels", b"", stack.keys.alice))
    assert [m.name for m in listed.models] == ["test-model"]
    with pytest.raises(grpc.RpcError) as err:
        call_raw(channel, "/atelier.v1.Generation/GetJob", gen.GetJobRequest(job_id="nope").SerializeToString(),
                 stack.keys.alice)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
