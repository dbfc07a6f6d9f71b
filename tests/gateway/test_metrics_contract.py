"""The gateway counts a call by how it really ended (services/gateway/metrics.py): a Watch read to
its end is OK, one refused is its error code, one the client left is CANCELLED, one that raised
is UNKNOWN; each once, and timed; its /metrics serves them with each queue's depth."""

from __future__ import annotations

import time
import urllib.request
from concurrent import futures

import grpc
import pytest

from atelier.v1 import generation_pb2 as gen
from services.common.embedded_redis import free_port
from services.common.jobs import Priority
from services.gateway import metrics
from tests.gateway.helpers import Stubs, auth, request

pytestmark = pytest.mark.redis


def scraped(port: int, sample: str) -> float:
    """The value of one sample, `name{labels}`, on the gateway's /metrics (0 when absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = [row for row in text.splitlines() if row.startswith(sample + " ")]
    return float(found[0][len(sample) + 1:]) if found else 0.0


def watch_count(port: int, code: str) -> float:
    return scraped(port, f'atelier_grpc_requests_total{{code="{code}",method="Generation/Watch"}}')


CODES = ("OK", "NOT_FOUND", "CANCELLED", "UNKNOWN")


def counts_since(port: int, before: dict[str, float]) -> dict[str, float]:
    return {code: watch_count(port, code) - before[code] for code in CODES}


def test_watch_streams_are_counted_by_how_they_ended(make_stack):
    port = free_port()
    stack = make_stack(gateway_metrics_port=port)
    stubs = Stubs(stack.address)
    alice = auth(stack.keys.alice)
    before = {code: watch_count(port, code) for code in CODES}  # the counters are the process's
    job_id = stubs.gen.Submit(request(), metadata=alice).job_id

    left = stubs.gen.Watch(gen.WatchRequest(job_id=job_id), metadata=alice, timeout=20)
    next(left)  # the job's queued event: the stream is open and waits for more
    left.cancel()
    with pytest.raises(grpc.RpcError) as refused:
        list(stubs.gen.Watch(gen.WatchRequest(job_id="0" * 32), metadata=alice, timeout=20))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    stack.worker.run_one()  # the left stream's next event finds its client gone
    assert len(list(stubs.gen.Watch(gen.WatchRequest(job_id=job_id), metadata=alice, timeout=20))) > 2

    expected = {"OK": 1.0, "NOT_FOUND": 1.0, "CANCELLED": 1.0, "UNKNOWN": 0.0}
    end = time.monotonic() + 10
    while (counted := counts_since(port, before)) != expected and time.monotonic() < end:
        time.sleep(0.05)
    assert counted == expected
    stubs.close()


# The interceptor alone, on a real gRPC server on loopback whose methods end every way a call can.

def _ok(request, context):
    return b"done"


def _not_found(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such job")


def _bug(request, context):
    raise RuntimeError("a bug")


def _stream_ok(request, context):
    yield b"one"
    yield b"two"


def _stream_bug(request, context):
    yield b"one"
    raise RuntimeError("a bug mid-stream")


def _stream_refused(request, context):
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
    yield b"never"


_HANDLERS = {
    "Ok": grpc.unary_unary_rpc_method_handler(_ok),
    "NotFound": grpc.unary_unary_rpc_method_handler(_not_found),
    "Bug": grpc.unary_unary_rpc_method_handler(_bug),
    "StreamOk": grpc.unary_stream_rpc_method_handler(_stream_ok),
    "StreamBug": grpc.unary_stream_rpc_method_handler(_stream_bug),
    "StreamRefused": grpc.unary_stream_rpc_method_handler(_stream_refused),
}


@pytest.fixture
def counted_server():
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[metrics.MetricsInterceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.v1.Probe", _HANDLERS)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(None)


def _calls(method: str, code: str) -> float:
    return metrics.RPCS.labels(method=f"Probe/{method}", code=code)._value.get()


def _timed(method: str, sample: str = "_count") -> float:
    return next((s.value for s in metrics.RPC_SECONDS.collect()[0].samples
                 if s.name.endswith(sample) and s.labels == {"method": f"Probe/{method}"}), 0.0)


@pytest.mark.parametrize("method, stream, code", [
    ("Ok", False, "OK"), ("NotFound", False, "NOT_FOUND"), ("Bug", False, "UNKNOWN"),
    ("StreamOk", True, "OK"), ("StreamBug", True, "UNKNOWN"), ("StreamRefused", True, "PERMISSION_DENIED"),
])
def test_each_call_is_counted_once_under_its_method_and_how_it_ended(counted_server, method, stream, code):
    before = {c: _calls(method, c) for c in ("OK", "UNKNOWN", code)}
    timed, seconds = _timed(method), _timed(method, "_sum")
    call = (counted_server.unary_stream if stream else counted_server.unary_unary)(f"/test.v1.Probe/{method}")
    started = time.perf_counter()
    try:
        result = call(b"", timeout=10)
        if stream:
            result = list(result)
        assert code == "OK" and result in (b"done", [b"one", b"two"])
    except grpc.RpcError as err:
        assert err.code().name == code
    elapsed = time.perf_counter() - started
    after = {c: _calls(method, c) for c in before}
    assert after[code] - before[code] == 1.0
    assert sum(after.values()) - sum(before.values()) == 1.0  # counted under no other code
    assert _timed(method) - timed == 1.0
    # the server's own time of the call: inside the time the client waited for it
    assert 0 <= _timed(method, "_sum") - seconds <= elapsed


def test_an_unknown_method_is_left_to_grpc_and_not_counted(counted_server):
    with pytest.raises(grpc.RpcError) as err:
        counted_server.unary_unary("/test.v1.Probe/Missing")(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert not [s for s in metrics.RPCS.collect()[0].samples if s.labels.get("method") == "Probe/Missing"]


def test_the_registry_serves_the_gateway_s_metrics_and_each_queue_s_depth(redis_client):
    redis_client.rpush(Priority.BATCH, b"{}", b"{}")
    registry = metrics.registry_for(redis_client)
    port = free_port()
    server = metrics.serve_metrics(port, registry)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'atelier_queue_depth{queue="batch"} 2.0' in text
    assert 'atelier_queue_depth{queue="interactive"} 0.0' in text
    for metric in ("atelier_grpc_requests_total", "atelier_jobs_submitted_total", "atelier_jobs_rejected_total",
                   "atelier_outbox_resent_total", "atelier_gateway_job_latency_seconds"):
        assert f"# TYPE {metric} " in text, metric
    assert metrics.serve_metrics(0, registry) is None
