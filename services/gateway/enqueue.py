"""Hands a stored job to the workers: one Celery message carrying only the job id.

A Submit does not call it: the gateway asks it for the message (`message`) and the admission
script pushes it in the step that stores the job. The outbox sweeper and tests that record
what is sent (an Enqueue without `message`) call it after the job is stored.

The gateway does not import the worker package (no onnxruntime, no numpy models): it
publishes by task name (services.common.queues.TASK_NAME) on the Redis broker the
workers consume, to the queue named after the job's priority, with the same broker
options the workers use (services.common.queues.celery_config).
"""

from __future__ import annotations

from typing import Protocol

from celery import Celery

from services.common import queues
from services.common.settings import Settings


class Enqueue(Protocol):
    def __call__(self, job_id: str, queue: str) -> None: ...


class SentByAdmission(Protocol):
    """An Enqueue whose publish the admission script can make itself: `message` gives the broker
    list and the message that sends the job (services.common.queues.broker_message)."""

    def message(self, job_id: str, queue: str) -> tuple[str, str]: ...


class CeleryEnqueue:
    def __init__(self, settings: Settings):
        self.app = Celery("atelier-gateway", set_as_current=False)
        self.app.conf.update(queues.celery_config(settings))
        self.messages = queues.TaskMessages(self.app)

    def __call__(self, job_id: str, queue: str) -> None:
        queues.enqueue(self.app, job_id, queue)

    def message(self, job_id: str, queue: str) -> tuple[str, str]:
        return self.messages.message(job_id, queue)

    def close(self) -> None:
        self.app.close()
