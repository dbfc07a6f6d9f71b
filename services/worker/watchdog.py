"""The hard time limit of a thread-pool worker.

Celery enforces ``task_time_limit`` by killing the prefork child that runs a task; a thread
pool has no child to kill, and the soft limit (``reporting.py``) is only checked between
sampler steps. A job stuck inside one call (a hung GPU kernel, a deadlocked runtime) would
hold its slot, and its model's batching thread, for good. A Python thread cannot be killed,
so the watchdog ends the process instead, the way a prefork pool ends its child: it fails
the stuck job with TIMEOUT (fenced by attempt, so a job that finished meanwhile is left as
it is), asks every other running job to hand itself back to its queue (they stop at their
next step), gives them a short grace, and exits with ``EXIT_HARD_LIMIT`` so the supervisor
(Kubernetes, compose, ``atelier up``) starts a fresh worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# EX_SOFTWARE of sysexits.h: the process ended itself because a job hung inside it.
EXIT_HARD_LIMIT = 70


@dataclass(frozen=True)
class StuckJob:
    job: Any            # the JobRecord the attempt was started from
    attempt: int
    seconds: float      # how long the attempt had run when the watchdog fired


class HardLimitWatchdog:
    """Tracks the attempts running in this process; once any has run longer than
    ``limit_seconds``, calls ``on_expired(stuck)`` once, from its own thread."""

    def __init__(self, limit_seconds: float, on_expired: Callable[[list[StuckJob]], None], *,
                 interval_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if limit_seconds <= 0:
            raise ValueError(f"hard time limit must be positive, got {limit_seconds}")
        self.limit_seconds = limit_seconds
        self.on_expired = on_expired
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._running: dict[tuple[str, int], tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def track(self, job: Any, attempt: int):
        key = (job.job_id, attempt)
        with self._lock:
            self._running[key] = (job, self.clock())
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(key, None)

    def restart(self, job: Any, attempt: int) -> None:
        """The attempt's limit counts from now: a dataset job's limit holds per shard."""
        key = (job.job_id, attempt)
        with self._lock:
            if key in self._running:
                self._running[key] = (job, self.clock())

    def stuck(self) -> list[StuckJob]:
        now = self.clock()
        with self._lock:
            return [StuckJob(job, attempt, now - started) for (_, attempt), (job, started) in self._running.items()
                    if now - started > self.limit_seconds]

    def start(self) -> HardLimitWatchdog:
        self._thread = threading.Thread(target=self._watch, name="atelier-hard-limit", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            stuck = self.stuck()
            if stuck:
                self.on_expired(stuck)
                return
