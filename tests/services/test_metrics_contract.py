"""A worker's /metrics endpoint (services/common/metrics.py) serves the registry it is given."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from services.common import metrics
from services.common.embedded_redis import free_port


def test_serve_exposes_the_given_registry_on_the_given_port():
    registry = CollectorRegistry()
    Counter("atelier_contract_probe", "A counter only this test registers.", registry=registry).inc(3)
    port = free_port()
    metrics.serve(port, registry)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "atelier_contract_probe_total 3.0" in text


def test_an_outcome_counts_once_under_its_lower_case_name_with_its_latency():
    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (sample("atelier_jobs_total", outcome="expired"),
              sample("atelier_job_latency_seconds_count", queue="batch", outcome="expired"),
              sample("atelier_job_latency_seconds_sum", queue="batch", outcome="expired"))
    metrics.record_outcome("EXPIRED", "batch", 0.25)
    metrics.record_outcome("EXPIRED", "batch", -3.0)  # a clock step back is no negative latency
    after = (sample("atelier_jobs_total", outcome="expired"),
             sample("atelier_job_latency_seconds_count", queue="batch", outcome="expired"),
             sample("atelier_job_latency_seconds_sum", queue="batch", outcome="expired"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [2.0, 2.0, 0.25]


@pytest.mark.redis
def test_queue_depth_sums_the_lists_of_the_collector_s_own_priority_steps(redis_client):
    redis_client.rpush("depth-q", b"{}")
    redis_client.rpush("depth-q\x06\x165", b"{}", b"{}")
    redis_client.rpush("depth-q\x06\x163", b"{}")  # a step this collector was not given
    collector = metrics.QueueDepthCollector(redis_client, ["depth-q"], priority_steps=(0, 5))
    assert collector.depth("depth-q") == 3
    (family,) = collector.collect()
    assert [(s.labels, s.value) for s in family.samples] == [({"queue": "depth-q"}, 3.0)]


@pytest.mark.redis
def test_a_queue_whose_depth_cannot_be_read_is_left_out_and_the_others_still_reported(redis_client):
    redis_client.set("depth-broken", b"not a list")  # LLEN on it fails with WRONGTYPE
    redis_client.rpush("depth-fine", b"{}")
    collector = metrics.QueueDepthCollector(redis_client, ["depth-broken", "depth-fine"], priority_steps=(0,))
    (family,) = collector.collect()
    assert [(s.labels, s.value) for s in family.samples] == [({"queue": "depth-fine"}, 1.0)]
