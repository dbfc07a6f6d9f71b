"""Quotas and queue caps answer RESOURCE_EXHAUSTED with a retry delay; request ids are idempotent."""

import threading

import grpc
import pytest

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import types_pb2
from tests.gateway.helpers import Stubs, auth, kind, request, retry_delay

pytestmark = pytest.mark.redis


def _submit(stubs, key, **fields):
    return stubs.gen.Submit(request(**fields), metadata=auth(key))


def _exhausted(call) -> float:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = retry_delay(err.value)
    # Never "retry at once", never later than the next minute's rate window opens.
    assert delay is not None and 0.5 <= delay <= 60.0
    return delay


def test_jobs_in_flight_per_tenant(make_stack):
    stack = make_stack(tenant_max_jobs_in_flight=2)
    stubs = Stubs(stack.address)
    first = _submit(stubs, stack.keys.alice)
    _submit(stubs, stack.keys.alice)
    _exhausted(lambda: _submit(stubs, stack.keys.alice))
    _submit(stubs, stack.keys.bob)  # another tenant has its own quota
    stubs.gen.CancelJob(gen.CancelJobRequest(job_id=first.job_id), metadata=auth(stack.keys.alice))
    _submit(stubs, stack.keys.alice)  # a finished job frees its slot
    assert len(stack.queue.sent) == 4
    stubs.close()


def test_jobs_per_minute_per_tenant(make_stack):
    stack = make_stack(tenant_jobs_per_minute=3)
    stubs = Stubs(stack.address)
    for _ in range(3):
        _submit(stubs, stack.keys.alice)
    delay = _exhausted(lambda: _submit(stubs, stack.keys.alice))
    assert delay <= 60
    _submit(stubs, stack.keys.bob)
    stubs.close()


def test_queue_depth_cap_per_priority(make_stack):
    stack = make_stack(max_queue_depth_interactive=3, max_queue_depth_batch=100)
    # Celery's Redis transport keeps a queue as a list named after it: fill it as waiting jobs would.
    stack.redis.rpush("interactive", *[b"{}"] * 3)
    stubs = Stubs(stack.address)
    _exhausted(lambda: _submit(stubs, stack.keys.alice))
    _exhausted(lambda: _submit(stubs, stack.keys.bob))  # a cap of the queue, not of a tenant
    handle = _submit(stubs, stack.keys.alice, priority=types_pb2.PRIORITY_BATCH)
    assert handle.queue_position == 3  # batch waits behind the interactive queue
    assert stack.queue.sent == [(handle.job_id, "batch")]
    stubs.close()


def test_queued_event_and_handle_carry_position_and_eta(stack):
    stack.redis.rpush("interactive", *[b"{}"] * 5)
    stubs = Stubs(stack.address)
    handle = _submit(stubs, stack.keys.alice, steps=10, seeds=[1])
    assert handle.queue_position == 5 and handle.eta.ToNanoseconds() > 0
    # Behind the same queue, twice the sampler steps are expected to take twice as long.
    longer = _submit(stubs, stack.keys.alice, steps=20, seeds=[1])
    assert longer.queue_position == 5
    assert longer.eta.ToNanoseconds() == pytest.approx(2 * handle.eta.ToNanoseconds(), abs=10)
    first = next(iter(stubs.gen.Watch(gen.WatchRequest(job_id=handle.job_id), metadata=auth(stack.keys.alice))))
    assert kind(first) == "queued"
    assert first.queued.position == 5 and first.queued.queue == "interactive"
    assert first.queued.eta == handle.eta
    stubs.close()


def test_same_request_id_returns_the_existing_job(stack):
    stubs = Stubs(stack.address)
    a = _submit(stubs, stack.keys.alice, request_id="r-1", seeds=[5])
    b = _submit(stubs, stack.keys.alice, request_id="r-1", seeds=[6])
    assert b.existing and not a.existing and b.job_id == a.job_id and list(b.seeds) == [5]
    c = _submit(stubs, stack.keys.bob, request_id="r-1")  # request ids are per tenant
    assert c.job_id != a.job_id and not c.existing
    assert len(stack.queue.sent) == 2
    stubs.close()


def test_idempotency_holds_under_a_race(make_stack):
    stack = make_stack(gateway_threads=32)
    stubs = Stubs(stack.address)
    results, barrier = [], threading.Barrier(12)

    def go():
        barrier.wait(timeout=20)
        results.append(_submit(stubs, stack.keys.alice, request_id="race"))

    threads = [threading.Thread(target=go) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert len({r.job_id for r in results}) == 1
    assert sum(not r.existing for r in results) == 1
    assert len(stack.queue.sent) == 1
    stubs.close()


def test_resubmitting_an_existing_job_is_not_refused_by_quotas(make_stack):
    stack = make_stack(tenant_max_jobs_in_flight=1)
    stubs = Stubs(stack.address)
    a = _submit(stubs, stack.keys.alice, request_id="only")
    b = _submit(stubs, stack.keys.alice, request_id="only")  # a client retry, not a new job
    assert b.existing and b.job_id == a.job_id
    stubs.close()
