"""Health, reflection, metrics and TLS of a running gateway."""

import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from atelier.v1 import models_pb2
from services.common import readiness
from services.common.embedded_redis import free_port
from services.gateway.health import LIVENESS, HealthMonitor
from tests.gateway.helpers import Stubs, auth, request
from tests.gateway.tls_certs import make_pki

pytestmark = pytest.mark.redis


def _health(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                         timeout=10).status


def _wait_for(predicate, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_health_follows_worker_readiness(make_stack):
    stack = make_stack(ready=False)
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", "atelier.v1.Generation", "atelier.v1.Models"):
        assert _health(stack.address, service) == not_serving
    # Alive all the same: a liveness probe must not restart a gateway because workers are down.
    assert _health(stack.address, LIVENESS) == serving
    prefix = stack.gateway.settings.key_prefix
    readiness.report(stack.redis, prefix, readiness.WorkerStatus("w1", ("other-model/1",)), ttl=60)
    time.sleep(0.5)
    assert _health(stack.address) == not_serving  # a model the repository does not offer
    readiness.report(stack.redis, prefix, readiness.WorkerStatus("w1", ("test-model/1",)), ttl=0.8)
    assert _wait_for(lambda: _health(stack.address) == serving)
    assert _wait_for(lambda: _health(stack.address) == not_serving)  # the heartbeat expired


def test_health_is_not_serving_when_the_check_fails():
    servicer = health.HealthServicer()

    def broken():
        raise ConnectionError("redis is away")

    monitor = HealthMonitor(servicer, broken)
    assert monitor.refresh() is False


def test_reflection_lists_both_services(stack):
    with grpc.insecure_channel(stack.address) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"atelier.v1.Generation", "atelier.v1.Models", "grpc.health.v1.Health"} <= services


def test_metrics_endpoint(make_stack):
    port = free_port()
    stack = make_stack(gateway_metrics_port=port)
    stubs = Stubs(stack.address)
    stubs.gen.Submit(request(), metadata=auth(stack.keys.alice))
    with pytest.raises(grpc.RpcError):
        stubs.gen.Submit(request(), metadata=auth("atk_bad_bad"))
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'atelier_grpc_requests_total{code="OK",method="Generation/Submit"}' in text
    assert 'atelier_grpc_requests_total{code="UNAUTHENTICATED",method="Generation/Submit"}' in text
    assert 'atelier_jobs_submitted_total{queue="interactive"}' in text
    assert 'atelier_queue_depth{queue="interactive"}' in text
    assert "atelier_gateway_job_latency_seconds" in text and "atelier_gateway_job_queue_seconds" in text
    # No tenant or job ids in series, but for the one documented exception, the content-policy audit
    # counter (docs/API.md, "Content policy"), which other tests in this process may have filled.
    others = "\n".join(line for line in text.splitlines() if not line.startswith("atelier_policy_decisions"))
    assert "alice" not in others and 'tenant="' not in others and 'job_id="' not in text
    stubs.close()


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_and_mutual_tls(make_stack, tmp_path, mutual):
    pki = make_pki(tmp_path)
    extra = {"tls_client_ca": pki.ca} if mutual else {}
    stack = make_stack(tls_cert=pki.server_cert, tls_key=pki.server_key, **extra)
    address = f"localhost:{stack.gateway.port}"
    ca = pki.ca.read_bytes()
    with_cert = grpc.ssl_channel_credentials(ca, pki.client_key.read_bytes(), pki.client_cert.read_bytes())
    without_cert = grpc.ssl_channel_credentials(ca)

    def list_models(credentials):
        stubs = Stubs(address, credentials)
        try:
            return stubs.models.ListModels(models_pb2.ListModelsRequest(), metadata=auth(stack.keys.alice), timeout=5)
        finally:
            stubs.close()

    assert list_models(with_cert).models
    if mutual:
        with pytest.raises(grpc.RpcError) as err:
            list_models(without_cert)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    else:
        assert list_models(without_cert).models
    with pytest.raises(grpc.RpcError):  # plaintext against a TLS port
        Stubs(address).models.ListModels(models_pb2.ListModelsRequest(), metadata=auth(stack.keys.alice), timeout=2)
