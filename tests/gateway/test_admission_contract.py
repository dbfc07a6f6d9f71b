"""Each admission refusal (services/gateway/admission.py) tells the client which limit it hit, with
the numbers, and is counted under that limit's name."""

from __future__ import annotations

import grpc
import pytest

from services.common.embedded_redis import free_port
from tests.gateway.helpers import Stubs, auth, request
from tests.gateway.test_metrics_contract import scraped

pytestmark = pytest.mark.redis


def rejected(port: int, reason: str) -> float:
    return scraped(port, f'atelier_jobs_rejected_total{{reason="{reason}"}}')


@pytest.mark.parametrize("limit, settings, accepted, message", [
    ("tenant_in_flight", dict(tenant_max_jobs_in_flight=2), 2,
     "tenant has 2 jobs queued or running, the limit is 2"),
    ("tenant_rate", dict(tenant_jobs_per_minute=3), 3,
     "tenant submitted 3 jobs this minute, the limit is 3 a minute"),
    ("queue_full", dict(max_queue_depth_interactive=3), 0,
     "the interactive queue holds 3 jobs, its limit is 3"),
])
def test_a_refusal_names_its_limit_with_the_numbers(make_stack, limit, settings, accepted, message):
    port = free_port()
    stack = make_stack(gateway_metrics_port=port, **settings)
    if limit == "queue_full":
        stack.redis.rpush("interactive", *[b"{}"] * 3)  # three jobs waiting, as Celery keeps them
    stubs = Stubs(stack.address)
    before = rejected(port, limit)
    for _ in range(accepted):
        stubs.gen.Submit(request(), metadata=auth(stack.keys.alice))
    with pytest.raises(grpc.RpcError) as refused:
        stubs.gen.Submit(request(), metadata=auth(stack.keys.alice))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == message
    assert rejected(port, limit) - before == 1.0
    stubs.close()
