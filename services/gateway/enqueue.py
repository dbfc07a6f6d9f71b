"""Hands a stored job to the workers: one Celery message carrying only the job id.

The gateway does not import the worker package (no onnxruntime, no numpy models): it
publishes by task name on the Redis broker the workers consume, to the queue named
after the job's priority.
"""

from __future__ import annotations

from typing import Protocol

from celery import Celery

TASK_NAME = "atelier.run_job"


class Enqueue(Protocol):
    def __call__(self, job_id: str, queue: str) -> None: ...


class CeleryEnqueue:
    def __init__(self, broker_url: str, visibility_timeout: int, task_name: str = TASK_NAME):
        self.task_name = task_name
        self.app = Celery("atelier-gateway", broker=broker_url, set_as_current=False)
        self.app.conf.update(
            broker_transport_options={"visibility_timeout": visibility_timeout},
            broker_connection_retry_on_startup=True,
            task_create_missing_queues=True,
        )

    def __call__(self, job_id: str, queue: str) -> None:
        self.app.send_task(self.task_name, args=[job_id], queue=queue, routing_key=queue)

    def close(self) -> None:
        self.app.close()
