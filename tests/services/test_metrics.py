"""Metric naming rules (docs/ARCHITECTURE.md, Contracts: metrics) and the queue depth read from Redis."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.common import metrics
from services.common.queues import QUEUES


def test_names_follow_the_conventions():
    families = [m for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")]
    assert len(families) >= 10
    for m in families:
        assert m._name.startswith("atelier_"), m._name
        if m._type == "counter":
            assert not m._name.endswith("_total")  # prometheus-client appends _total itself
        assert not {"job_id", "job"} & set(m._labelnames)
        # The one tenant label: content-policy decisions, audited per tenant (tenants are the keys
        # file's, a set the operator keeps).
        assert "tenant" not in m._labelnames or m._name == "atelier_policy_decisions"


@pytest.mark.redis
def test_queue_depth_counts_waiting_messages(redis_client):
    redis_client.lpush("batch", "a", "b")
    redis_client.lpush("batch\x06\x163", "c")
    registry = CollectorRegistry()
    registry.register(metrics.QueueDepthCollector(redis_client, QUEUES))
    text = generate_latest(registry).decode()
    assert 'atelier_queue_depth{queue="batch"} 3.0' in text
    assert 'atelier_queue_depth{queue="interactive"} 0.0' in text
