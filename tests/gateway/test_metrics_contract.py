"""The gateway counts a streaming call by how it really ended (services/gateway/metrics.py): a
Watch read to its end is OK, one refused is its error code, one the client left is CANCELLED."""

from __future__ import annotations

import time
import urllib.request

import grpc
import pytest

from atelier.v1 import generation_pb2 as gen
from services.common.embedded_redis import free_port
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
