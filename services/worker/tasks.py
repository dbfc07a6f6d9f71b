"""The one Celery task: it carries only a job id; everything else is in the job record."""

from __future__ import annotations

from celery.exceptions import Reject

from services.common.queues import TASK_NAME
from services.worker.celery_app import app, context
from services.worker.reporting import WorkerShuttingDown


@app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def generate(job_id: str) -> str | None:
    try:
        return context().executor.run(job_id)
    except WorkerShuttingDown:
        # Back on its queue at once: the next worker finishes it (as a new attempt).
        raise Reject(f"worker shutting down; job {job_id} handed back", requeue=True) from None
