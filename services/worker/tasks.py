"""The one Celery task: it carries only a job id; everything else is in the job record."""

from __future__ import annotations

from celery.exceptions import Reject

from services.common.queues import TASK_NAME
from services.worker.celery_app import app, context
from services.worker.executor import REDIS_UNREACHABLE
from services.worker.reporting import WorkerShuttingDown


@app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def generate(job_id: str) -> str | None:
    try:
        return context().executor.run(job_id)
    except WorkerShuttingDown:
        # Back on its queue at once: the next worker finishes it (as a new attempt).
        raise Reject(f"worker shutting down; job {job_id} handed back", requeue=True) from None
    except REDIS_UNREACHABLE:
        # Redis went away before the job was leased (after, the lease brings it back): an ack
        # would drop the only message of the job. Back on its queue, or, with Redis still away,
        # left unacknowledged for a reaper (services/worker/leases.py) to find.
        raise Reject(f"Redis unreachable; job {job_id} handed back", requeue=True) from None
