"""Open streams have their own capacity: one tenant's streams cannot starve other tenants,
unary calls or the health check, and a stream over a limit is refused with a RetryInfo."""

from __future__ import annotations

import contextlib
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atelier.v1 import generation_pb2 as gen
from services.gateway.auth import add_key
from tests.gateway.helpers import Stubs, auth, kind, request, retry_delay

pytestmark = pytest.mark.redis

PER_TENANT = 3
TOTAL = 6
DEADLINE = 10.0  # seconds any one call may take


def _watch(stubs: Stubs, key: str, job_id: str):
    """Open a Watch stream and read its first event, so the gateway surely holds it."""
    call = stubs.gen.Watch(gen.WatchRequest(job_id=job_id), metadata=auth(key), timeout=3 * DEADLINE)
    assert kind(next(call)) == "queued"
    return call


def _refused(stubs: Stubs, key: str, job_id: str) -> str:
    call = stubs.gen.Watch(gen.WatchRequest(job_id=job_id), metadata=auth(key), timeout=DEADLINE)
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    delay = retry_delay(err.value)
    assert delay is not None and delay > 0
    return err.value.details()


def _submit(stubs: Stubs, key: str) -> str:
    return stubs.gen.Submit(request(), metadata=auth(key), timeout=DEADLINE).job_id


def _served(stubs: Stubs, key: str, job_id: str) -> None:
    """Unary calls and the health check still answer."""
    job = stubs.gen.GetJob(gen.GetJobRequest(job_id=job_id), metadata=auth(key), timeout=DEADLINE)
    assert job.job_id == job_id
    health = health_pb2_grpc.HealthStub(stubs.channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=DEADLINE)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert _submit(stubs, key)


@pytest.fixture
def limited(make_stack):
    # Two threads for unary calls: without their own capacity, streams would take them.
    stack = make_stack(gateway_threads=2, gateway_max_streams=TOTAL, tenant_max_streams=PER_TENANT)
    stubs = Stubs(stack.address)
    streams: list = []
    yield stack, stubs, streams
    for call in streams:
        call.cancel()
    stubs.close()


def test_a_tenant_over_its_stream_limit_is_refused_and_others_are_still_served(limited):
    stack, stubs, streams = limited
    alice, bob = stack.keys.alice, stack.keys.bob
    job = _submit(stubs, alice)
    streams += [_watch(stubs, alice, job) for _ in range(PER_TENANT)]

    details = _refused(stubs, alice, job)
    assert f"holds {PER_TENANT} open streams, the limit is {PER_TENANT}" in details
    generate = stubs.gen.Generate(request(), metadata=auth(alice), timeout=DEADLINE)
    with pytest.raises(grpc.RpcError) as err:
        next(generate)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_delay(err.value)

    bobs_job = _submit(stubs, bob)
    streams.append(_watch(stubs, bob, bobs_job))  # another tenant's Watch answers
    _served(stubs, alice, job)  # and so do unary calls, even the full tenant's
    _served(stubs, bob, bobs_job)

    # A stream that ends gives its slot back.
    streams.pop(0).cancel()
    deadline = time.monotonic() + DEADLINE
    while True:
        with contextlib.suppress(grpc.RpcError):
            streams.append(_watch(stubs, alice, job))
            break
        assert time.monotonic() < deadline, "a cancelled stream never gave its slot back"
        time.sleep(0.05)


def test_all_stream_slots_taken_leaves_unary_calls_and_health_served(limited):
    stack, stubs, streams = limited
    carol = add_key(stack.keys.path, "carol")[1]
    jobs = {key: _submit(stubs, key) for key in (stack.keys.alice, stack.keys.bob, carol)}
    for key in (stack.keys.alice, stack.keys.bob):
        streams += [_watch(stubs, key, jobs[key]) for _ in range(PER_TENANT)]

    details = _refused(stubs, carol, jobs[carol])  # carol holds none, but the gateway is full
    assert f"the gateway holds {TOTAL} open streams, its limit is {TOTAL}" in details
    for key, job in jobs.items():
        _served(stubs, key, job)
    # Many unary calls at once still find their own threads.
    futures = [stubs.gen.GetJob.future(gen.GetJobRequest(job_id=jobs[carol]), metadata=auth(carol),
                                       timeout=DEADLINE) for _ in range(20)]
    assert all(f.result().job_id == jobs[carol] for f in futures)
