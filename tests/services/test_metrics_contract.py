"""A worker's /metrics endpoint (services/common/metrics.py) serves the registry it is given."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry, Counter

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
