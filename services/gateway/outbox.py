"""Sends the jobs that a gateway stored but never handed to the broker.

`JobStore.create` writes each new job into an outbox together with its record; the
gateway takes it out once the broker has the job. A gateway that crashes in between
leaves the entry behind, and the sweeper of any gateway sends that job after a grace
period. Tasks are idempotent, so the rare double send (a gateway stalled longer than
the grace period) costs one no-op task, never a second result.
"""

from __future__ import annotations

import logging
import threading

from services.common.jobs import JobState
from services.common.store import JobNotFound, JobStore
from services.gateway import metrics
from services.gateway.enqueue import Enqueue

log = logging.getLogger(__name__)


class OutboxSweeper:
    def __init__(self, store: JobStore, enqueue: Enqueue, grace_seconds: float = 30.0, interval: float = 10.0):
        self.store, self.enqueue = store, enqueue
        self.grace_seconds, self.interval = grace_seconds, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep_once(self, now: float | None = None) -> list[str]:
        """Send every overdue job this sweeper wins; returns their ids."""
        sent = []
        for job_id in self.store.unsent(self.grace_seconds, now):
            if not self.store.claim_unsent(job_id, self.grace_seconds, now):
                continue  # another gateway's sweeper has it
            try:
                record = self.store.get(job_id)
            except JobNotFound:
                self.store.sent(job_id)
                continue
            if record.state != JobState.QUEUED:  # cancelled or expired before it was ever sent
                self.store.sent(job_id)
                continue
            try:
                self.enqueue(job_id, record.spec.priority)
            except Exception:  # noqa: BLE001 - the lease runs out and the next sweep retries
                log.exception("outbox: could not send job %s; will retry", job_id)
                continue
            self.store.sent(job_id)
            metrics.OUTBOX_RESENT.inc()
            log.warning("outbox: sent job %s, stored by a gateway that did not send it", job_id)
            sent.append(job_id)
        return sent

    def start(self) -> OutboxSweeper:
        self._thread = threading.Thread(target=self._run, name="atelier-outbox", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep_once()
            except Exception:  # noqa: BLE001 - Redis away: try again next interval
                log.exception("outbox sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 1)
