"""grpc.health.v1.Health: SERVING only while Redis answers and a worker has a model ready.

The service name `atelier.liveness` is SERVING while the process runs, for liveness probes.

A daemon thread re-checks every `interval` seconds and sets the status of the whole
server ("") and of each Atelier service, so a load balancer or Kubernetes probe stops
sending jobs to a gateway whose jobs could not run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from grpc_health.v1 import health, health_pb2

log = logging.getLogger(__name__)

SERVICES = ("", "atelier.v1.Generation", "atelier.v1.Models")
# SERVING for as long as the process answers at all: what a liveness probe asks. A gateway
# whose Redis or workers are down is alive (restarting it would not help), only not ready.
LIVENESS = "atelier.liveness"


class HealthMonitor:
    def __init__(self, servicer: health.HealthServicer, check: Callable[[], tuple[bool, str]], interval: float = 2.0):
        self.servicer, self.check, self.interval = servicer, check, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.serving: bool | None = None

    def refresh(self) -> bool:
        try:
            ok, why = self.check()
        except Exception as exc:  # noqa: BLE001 - any failure to check means not serving
            ok, why = False, f"health check failed: {exc}"
        if ok != self.serving:
            log.info("health: %s%s", "SERVING" if ok else "NOT_SERVING", "" if ok else f" ({why})")
        self.serving = ok
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in SERVICES:
            self.servicer.set(name, status)
        return ok

    def start(self) -> HealthMonitor:
        self.servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="atelier-health", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 1)
        self.servicer.enter_graceful_shutdown()
