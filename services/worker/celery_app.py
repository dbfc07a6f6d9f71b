"""The worker's Celery app, built from Settings: `celery -A services.worker.celery_app worker`.

Prefer `atelier worker`, which passes the options this app expects (thread pool of
`worker_concurrency`, queues `interactive,batch` in that order). The process-wide
:class:`WorkerContext` (job store, loaded models, metrics endpoint, readiness heartbeat)
is made when the worker starts and torn down when it stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis
from celery import Celery, signals

from services.common import metrics, readiness
from services.common.queues import QUEUES, celery_config, enqueue
from services.common.settings import Settings
from services.common.store import JobStore
from services.worker.batching_choice import PROBE_TIMEOUT_S
from services.worker.cancellations import CancelListener
from services.worker.executor import JobExecutor, worker_name
from services.worker.leases import LeaseKeeper, Reaper
from services.worker.models import ModelRegistry
from services.worker.runtime import load_loader
from services.worker.watchdog import EXIT_HARD_LIMIT, HardLimitWatchdog, StuckJob

log = logging.getLogger(__name__)

# How long healthy jobs get to stop at their next step and requeue before a worker whose job hung
# past the hard limit exits.
HAND_BACK_GRACE_SECONDS = 10.0


def make_celery(settings: Settings) -> Celery:
    app = Celery("atelier", include=["services.worker.tasks"])
    app.conf.update(celery_config(settings))
    app.conf.atelier_settings = settings
    return app


class WorkerContext:
    """What one worker process shares between its job threads."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.name = worker_name()
        self.client = redis.Redis.from_url(settings.redis_url)
        self.store = JobStore(self.client, settings.key_prefix, settings.result_ttl_seconds)
        loader = load_loader(settings.runtime_loader)
        self.models = ModelRegistry(
            lambda model, version: loader(settings, model, version),
            max_batch=settings.max_batch,
            wait_ms=settings.batch_wait_ms,
            batching=settings.batching,
            probe_timeout_s=min(PROBE_TIMEOUT_S, settings.task_soft_time_limit),
        )
        self.executor = JobExecutor(self.store, self.models, settings, name=self.name)
        # Set when the worker begins to shut down: running jobs hand themselves back.
        self.shutting_down = threading.Event()
        self.executor.stop_event = self.shutting_down
        self.heartbeat: readiness.Heartbeat | None = None
        self.hostname = ""  # the Celery node name, known once the consumer is ready
        self.cancels = CancelListener(self.client, self.store.cancel_channel)
        self.executor.cancelled = self.cancels.is_cancelled
        self.watchdog = HardLimitWatchdog(settings.task_time_limit, self._on_hard_limit)
        self.executor.watchdog = self.watchdog
        # Renews this worker's leases and hands back the jobs of workers whose leases lapsed.
        reaper = Reaper(self.store, lambda job_id, queue: enqueue(app, job_id, queue), settings.job_lease_seconds)
        self.leases = LeaseKeeper(self.executor.leases, reaper)

    def _on_hard_limit(self, stuck: list[StuckJob]) -> None:
        """A job hung past the hard limit: fail it, hand the others back, and end the process,
        the only way to free a thread stuck in native code (see watchdog.py)."""
        limit = self.settings.task_time_limit
        for s in stuck:
            log.error("job %s (attempt %d) stuck for %.0f s, past the hard time limit of %g s: failing it and "
                      "restarting this worker", s.job.job_id, s.attempt, s.seconds, limit)
            self.executor.fail_stuck(s, limit)
        self._stop_consuming()
        self.shutting_down.set()  # the other jobs stop at their next step and go back to their queues
        deadline = time.monotonic() + HAND_BACK_GRACE_SECONDS
        while self.executor.busy > len(stuck) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # let Celery requeue the handed-back messages before the process goes
        logging.shutdown()
        os._exit(EXIT_HARD_LIMIT)

    def _stop_consuming(self) -> None:
        """Take no more tasks, so the jobs handed back go to other workers rather than straight back
        to this one (Celery's own cancel_consumer control, answered by this worker's consumer)."""
        if not self.hostname:
            return
        for queue in QUEUES:
            try:
                app.control.cancel_consumer(queue, destination=[self.hostname], reply=True, timeout=2.0)
            except Exception as err:  # noqa: BLE001 - exiting matters more than a clean hand-back
                log.warning("could not stop consuming %s: %s", queue, err)

    def start(self) -> None:
        self.cancels.start()
        self.watchdog.start()
        self.leases.start()
        metrics.SLOTS.set(self.settings.worker_concurrency)
        metrics.REGISTRY.register(metrics.QueueDepthCollector(self.client, QUEUES))
        metrics.serve(self.settings.worker_metrics_port)
        ready: tuple[str, ...] = ()
        provider = load_error = ""
        try:  # warm up the default model so the first job does not pay for loading it
            loaded = self.models.get(self.settings.default_model)
            ready, provider = (loaded.key,), loaded.runtime.execution_provider
        except Exception as err:  # noqa: BLE001 - the worker still serves other models
            log.warning("default model %s not loaded: %s", self.settings.default_model, err)
            load_error = f"default model {self.settings.default_model} not loaded: {err}"
        self._warm_default_upscaler()
        status = readiness.WorkerStatus(
            worker=self.name, models=ready, concurrency=self.settings.worker_concurrency, execution_provider=provider,
            load_error=load_error,
        )
        self.heartbeat = readiness.Heartbeat(self.client, self.settings.key_prefix, status).start()
        self.models.on_load = lambda keys: self._announce(models=keys)
        self.executor.on_measured = lambda timings: self._announce(timings=timings)
        self._announce(models=self.models.keys())  # a job may have loaded a version before the heartbeat began

    def _warm_default_upscaler(self) -> None:
        """Load the default upscaler, when the repository has one, so a job's first upscale does not load it."""
        if not (self.settings.model_repository / self.settings.default_upscaler).is_dir():
            return
        try:
            self.models.get(self.settings.default_upscaler)
        except Exception as err:  # noqa: BLE001 - jobs that upscale fail with MODEL_UNAVAILABLE; others run
            log.warning("default upscaler %s not loaded: %s", self.settings.default_upscaler, err)

    def _announce(self, **changes) -> None:
        """Publish a change of what this worker serves, or how fast, now rather than at the next beat."""
        if self.heartbeat:
            self.heartbeat.update(**changes)
            self.heartbeat.beat()

    def stop(self) -> None:
        self.leases.stop()
        self.watchdog.stop()
        self.cancels.stop()
        if self.heartbeat:
            self.heartbeat.stop()
        self.models.close()


app = make_celery(Settings.from_env())
_context: WorkerContext | None = None
_context_lock = threading.Lock()


def context() -> WorkerContext:
    global _context
    with _context_lock:
        if _context is None:
            _context = WorkerContext(app.conf.atelier_settings)
        return _context


@signals.worker_ready.connect
def _on_worker_ready(sender=None, **_) -> None:
    ctx = context()
    ctx.hostname = getattr(sender, "hostname", "") or ""
    ctx.start()


@signals.worker_shutting_down.connect
def _on_shutting_down(**_) -> None:
    if _context is not None:
        _context.shutting_down.set()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_) -> None:
    if _context is not None:
        _context.stop()
