"""Builds and runs the gateway: `serve(settings)` returns a running :class:`Gateway`.

    gateway = serve(Settings.from_env())
    ...
    gateway.stop()          # health NOT_SERVING, no new calls, open streams get the grace period

Everything the server needs can be passed in (an `enqueue` callable, a catalog), so
tests and the embedded stack (`atelier up`) run it in-process.
"""

from __future__ import annotations

import faulthandler
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from atelier.v1 import generation_pb2, models_pb2
from services.common import readiness
from services.common.settings import Settings
from services.common.store import JobStore
from services.common.webhooks.config import Webhooks, file_of
from services.gateway import content_policy, metrics, wire
from services.gateway.admission import Admission, Quotas
from services.gateway.auth import KeyRing
from services.gateway.catalog import ModelCatalog
from services.gateway.enqueue import CeleryEnqueue, Enqueue
from services.gateway.health import HealthMonitor
from services.gateway.outbox import OutboxSweeper
from services.gateway.service import JobService
from services.gateway.servicers import GenerationServicer, ModelsServicer, add_to_server
from services.gateway.streams import StreamLimits, StreamSlots
from services.gateway.validation import Limits
from services.gateway.web.app import build_app
from services.gateway.web.server import HttpServer

log = logging.getLogger(__name__)
STOP_OVERRUN_SECONDS = 5.0  # how long a stop waits for calls past the grace period

UNARY_BACKLOG_PER_THREAD = 16

SERVICE_NAMES = (
    generation_pb2.DESCRIPTOR.services_by_name["Generation"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["Models"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


@dataclass
class Gateway:
    """A running gateway; `address` is where it listens (with the real port when 0 was asked)."""

    settings: Settings
    server: grpc.Server
    address: str
    port: int
    health: HealthMonitor
    redis: redis.Redis
    jobs: JobService
    stopping: threading.Event
    metrics_server: object | None = None
    registry: object | None = None
    _closers: list = field(default_factory=list)
    http: HttpServer | None = None  # the HTTP/JSON API and playground, when ATELIER_HTTP_LISTEN is set

    @property
    def http_address(self) -> str | None:
        return self.http.address if self.http else None

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls; open streams get `grace` seconds (default: the setting) to end."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        self.health.stop()
        if self.http is not None:
            self.http.stop(grace)
        # A handler that ignores its cancellation (blocked in a Redis read) would hold the
        # shutdown open past the grace period; the orchestrator's kill would then be all that
        # ends it, with nothing said. Bound the wait and show where the threads stand.
        if not self.server.stop(grace).wait(timeout=grace + STOP_OVERRUN_SECONDS):
            log.warning("gRPC calls still running %.0f s after the grace period; their threads:",
                        STOP_OVERRUN_SECONDS)
            faulthandler.dump_traceback(all_threads=True)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        for close in self._closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.exception("while stopping the gateway")
        log.info("gateway stopped")

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from settings (None: plaintext); mutual TLS when a client CA is set."""
    if settings.tls_cert is None:
        return None
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def serve(
    settings: Settings,
    *,
    enqueue: Enqueue | None = None,
    catalog: ModelCatalog | None = None,
    health_interval: float = 2.0,
    poll_seconds: float = 0.5,
) -> Gateway:
    client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
    store = JobStore(client, settings.key_prefix, settings.result_ttl_seconds)
    # Submits and ListModels read worker readiness from a snapshot at most a second old;
    # the health check reads it fresh.
    snapshot = readiness.Snapshot(client, settings.key_prefix)
    catalog = catalog or ModelCatalog(settings.model_repository, settings.default_model, settings.max_side,
                                      snapshot.ready_models, default_upscaler=settings.default_upscaler,
                                      concept_classifier=settings.concept_classifier)
    closers = []
    if enqueue is None:
        enqueue = CeleryEnqueue(settings)
        closers.append(enqueue.close)
    jobs = JobService(store, catalog, Admission(store, Quotas.from_settings(settings), workers=snapshot.workers),
                      enqueue, Limits.from_settings(settings), poll_seconds=poll_seconds,
                      webhooks=Webhooks(file_of(settings.webhooks_file, settings.api_keys_file)))
    keys = KeyRing(settings.api_keys_file)
    jobs.policies = content_policy.from_settings(settings, keys)
    if settings.api_keys_file is None:
        log.warning("ATELIER_API_KEYS_FILE is unset: every call will be refused as UNAUTHENTICATED")
    stopping = threading.Event()
    slots = StreamSlots(settings.gateway_max_streams, settings.tenant_max_streams)  # shared by gRPC and HTTP
    server, health_servicer = _grpc_server(settings, keys, slots)
    generation, models = GenerationServicer(jobs, keys, stopping), ModelsServicer(catalog, keys)
    add_to_server(server, generation, models)
    monitor = HealthMonitor(health_servicer, _health_check(client, catalog, settings.key_prefix),
                            interval=health_interval)
    port, credentials = _listen(server, settings, cleanup=[*closers, client.close])
    server.start()
    http = None
    if settings.http_listen:
        app = build_app({"Generation": generation, "Models": models}, jobs, keys, slots,
                        max_body_bytes=_max_receive(settings) * 4 // 3 + (64 << 10))  # base64 in JSON
        try:
            http = HttpServer(app, settings.http_listen, settings).start()
        except (OSError, ValueError):
            server.stop(None)
            for close in [*closers, client.close]:
                close()
            raise
    monitor.start()
    sweeper = OutboxSweeper(store, enqueue, grace_seconds=settings.outbox_grace_seconds).start()
    closers.insert(0, sweeper.stop)
    registry = metrics.registry_for(client)
    metrics_server = metrics.serve_metrics(settings.gateway_metrics_port, registry)
    closers.append(client.close)
    host = settings.grpc_listen.rsplit(":", 1)[0]
    log.info(
        "gateway listening on %s:%d (%s)%s", host, port, "TLS" if credentials else "plaintext",
        f", metrics on :{settings.gateway_metrics_port}" if metrics_server else "",
    )
    return Gateway(
        settings, server, f"{host}:{port}", port, monitor, client, jobs, stopping, metrics_server, registry, closers,
        http,
    )


def _max_receive(settings: Settings) -> int:
    """Uploads ride in the request: room for an init image and a mask at their limit."""
    return 2 * settings.max_upload_bytes + (1 << 20)


def _grpc_server(settings: Settings, keys: KeyRing, slots: StreamSlots) -> tuple[grpc.Server, health.HealthServicer]:
    """The server with its interceptors, health and reflection; the servicers are added by the caller."""
    # Open streams hold a thread each, so they get threads of their own beside the unary
    # calls' (services/gateway/streams.py): health checks and GetJob are served whatever the
    # streams do. gRPC's own cap, which refuses without a RetryInfo, is only a backstop
    # against a flood of unary calls: UNARY_BACKLOG_PER_THREAD may wait for each thread.
    threads = settings.gateway_threads + settings.gateway_max_streams
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="atelier-grpc"),
        interceptors=[metrics.MetricsInterceptor(), StreamLimits(slots, keys)],
        maximum_concurrent_rpcs=threads + UNARY_BACKLOG_PER_THREAD * settings.gateway_threads,
        options=[
            ("grpc.max_receive_message_length", _max_receive(settings)),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    wire.add_servicer(server, health_servicer, health_pb2.DESCRIPTOR.services_by_name["Health"])
    wire.add_servicer(server, reflection.ReflectionServicer(SERVICE_NAMES),
                      reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"])
    return server, health_servicer


def _health_check(client: redis.Redis, catalog: ModelCatalog, key_prefix: str) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        client.ping()
        offered = {e.key for e in catalog.entries()}
        if not offered & readiness.ready_models(client, key_prefix):
            return False, "no worker has reported a model of the repository ready"
        return True, ""

    return check


def _listen(server: grpc.Server, settings: Settings, cleanup: list[Callable[[], object]],
            ) -> tuple[int, grpc.ServerCredentials | None]:
    """Bind the listen address (TLS when configured); when it cannot, stop the server, run
    `cleanup` and say which address was taken."""
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.grpc_listen)
        else:
            port = server.add_secure_port(settings.grpc_listen, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        server.stop(None)
        for close in cleanup:
            close()
        raise OSError(f"cannot listen on {settings.grpc_listen} (address in use?)")
    return port, credentials
