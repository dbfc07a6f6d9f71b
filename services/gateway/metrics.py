"""The gateway's Prometheus metrics and the interceptor that counts RPCs.

Worker-side job metrics live in services.common.metrics; the gateway adds what only the
edge sees. Latencies here are measured at the edge for jobs followed to the end by the
Generate stream that submitted them (each job counted once), so they include the network
hop and the event relay that a client really waits for.
"""

from __future__ import annotations

import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from services.common.jobs import Priority
from services.common.metrics import QueueDepthCollector

_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)

RPCS = Counter(
    "atelier_grpc_requests_total", "gRPC calls by method and status code.", ["method", "code"], registry=None
)
RPC_SECONDS = Histogram(
    "atelier_grpc_request_seconds", "Duration of gRPC calls (streams: until they end).", ["method"],
    buckets=_SECONDS, registry=None,
)
SUBMITTED = Counter("atelier_jobs_submitted_total", "Jobs accepted, by priority queue.", ["queue"], registry=None)
REJECTED = Counter(
    "atelier_jobs_rejected_total",
    "Submissions refused: invalid, content_policy, tenant_in_flight, tenant_rate, queue_full.",
    ["reason"],
    registry=None,
)
EDGE_QUEUE = Histogram(
    "atelier_gateway_job_queue_seconds", "Time in queue of jobs followed by their Generate stream.",
    ["queue"], buckets=_SECONDS, registry=None,
)
EDGE_LATENCY = Histogram(
    "atelier_gateway_job_latency_seconds",
    "Submission to final event of jobs followed by their Generate stream.",
    ["queue", "outcome"], buckets=_SECONDS, registry=None,
)
OUTBOX_RESENT = Counter(
    "atelier_outbox_resent_total", "Jobs sent to the broker by the outbox sweeper (their gateway died first).",
    registry=None,
)
UNKNOWN_EVENT_FIELDS = Counter(
    "atelier_gateway_unknown_event_fields_total",
    "Events relayed with a kind (field \"\") or a payload field this gateway does not know, which"
    " it left out: a newer worker's event (docs/ARCHITECTURE.md, Event contract).",
    ["kind", "field"], registry=None,
)
HTTP_REQUESTS = Counter(
    "atelier_http_requests_total", "HTTP/JSON API calls by route template and HTTP status.", ["route", "code"],
    registry=None,
)
HTTP_SECONDS = Histogram(
    "atelier_http_request_seconds", "Duration of HTTP/JSON API calls (event streams: until they end).", ["route"],
    buckets=_SECONDS, registry=None,
)
_ALL = (RPCS, RPC_SECONDS, HTTP_REQUESTS, HTTP_SECONDS, SUBMITTED, REJECTED, EDGE_QUEUE, EDGE_LATENCY, OUTBOX_RESENT,
        UNKNOWN_EVENT_FIELDS)


# The tenant label is the one exception to "no tenant ids as labels" (docs/ARCHITECTURE.md, Contracts:
# metrics): tenants are the keys file's, a set the operator keeps, and the audit asks per tenant.
POLICY_DECISIONS = Counter(
    "atelier_policy_decisions_total",
    "Prompts (check=PROMPT) and images (check=OUTPUT) a content policy filtered, by concept, action and tenant.",
    ["concept", "action", "check", "tenant"],
    registry=None,
)


def registry_for(redis_client) -> CollectorRegistry:
    """A registry of the gateway's metrics plus the live depth of each queue."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in _ALL:
        registry.register(metric)
    registry.register(QueueDepthCollector(redis_client, Priority.ALL))
    registry.register(POLICY_DECISIONS)
    return registry


def serve_metrics(port: int, registry: CollectorRegistry, addr: str = "0.0.0.0"):
    """Start /metrics on `port` (0: off); returns the HTTP server (call shutdown()) or None."""
    if not port:
        return None
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server


def _code_of(context) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every call by method and final status code, and times it."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        # "/atelier.v1.Generation/Submit" -> "Generation/Submit": bounded, and unique across services
        method = handler_call_details.method.rsplit(".", 1)[-1]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _record(method: str, code: str, started: float) -> None:
    RPCS.labels(method=method, code=code).inc()
    RPC_SECONDS.labels(method=method).observe(time.perf_counter() - started)


def _unary(behavior, method):
    def wrapped(request, context):
        started, code = time.perf_counter(), "UNKNOWN"
        try:
            response = behavior(request, context)
            code = _code_of(context)
            return response
        except Exception:
            code = _code_of(context)
            code = "UNKNOWN" if code == "OK" else code  # an exception that was not an abort
            raise
        finally:
            _record(method, code, started)

    return wrapped


def _stream(behavior, method):
    def wrapped(request, context):
        started, code = time.perf_counter(), "UNKNOWN"
        try:
            yield from behavior(request, context)
            code = _code_of(context)
        except GeneratorExit:  # gRPC stopped iterating: the client left or the server stopped
            code = "CANCELLED"
            raise
        except Exception:
            code = _code_of(context)
            code = "UNKNOWN" if code == "OK" else code
            raise
        finally:
            _record(method, code, started)

    return wrapped
