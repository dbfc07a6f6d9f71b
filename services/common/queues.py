"""The Celery side of the job path that both the gateway and workers need.

The gateway enqueues a job with :func:`enqueue` (only the job id travels), workers run
`TASK_NAME`; both build their Celery configuration with :func:`celery_config`, so the
broker options (visibility timeout, queue order) cannot drift apart. Workers' reapers send
a dead worker's jobs again through :func:`enqueue` too (services/worker/leases.py).

Late acks stay on: the broker redelivers a message no worker acknowledged once the
visibility timeout has passed, the guarantee beneath the leases. A job whose worker died is
back in seconds through its lapsed lease, long before that; the late delivery then finds the
job final or held by a live worker and runs nothing.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from kombu import Exchange, Queue, serialization

from services.common.jobs import Priority
from services.common.settings import Settings

TASK_NAME = "atelier.run_job"  # what services/gateway/enqueue.py sends
# Consumption order: a worker always drains `interactive` before it takes a `batch` job.
QUEUES = (Priority.INTERACTIVE, Priority.BATCH)
EXCHANGE = Exchange("atelier", type="direct")
# Where Celery's Redis transport keeps each message it delivered and no worker acknowledged
# yet (a hash by delivery tag) and when it delivered it (a zset): named here, so that the
# reaper (services/worker/leases.py) reads the keys the broker writes.
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"


def celery_config(settings: Settings) -> dict[str, Any]:
    # Abandoned (unacknowledged) jobs are looked for this often; the kombu default (10 s x 10
    # scans) would leave a killed worker's job waiting far longer than the visibility timeout.
    restore_interval = max(1, min(10, settings.visibility_timeout // 10))
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            "queue_order_strategy": "priority",
            "unacked_restore_interval": restore_interval,
            "unacked_restore_throttle": 1,
            "unacked_key": UNACKED_KEY,
            "unacked_index_key": UNACKED_INDEX_KEY,
        },
        "task_queues": tuple(Queue(name, EXCHANGE, routing_key=name) for name in QUEUES),
        "task_default_exchange": EXCHANGE.name,
        "task_default_queue": Priority.INTERACTIVE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # results live in the job store, not a Celery backend
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        "worker_hijack_root_logger": False,
    }


class TaskMessages:
    """The broker list and the message :func:`enqueue` would push for a job, made here so that
    the admission script can push it in the step that stores the job (services/common/store/
    admission.py): Celery's task message (protocol 2) in the envelope kombu's Redis transport
    keeps in its lists, on the anonymous exchange as `enqueue` sends it (priority 0, a fresh
    delivery tag). Nothing is sent.

    Celery builds the message once, for a stand-in job (`create_task_message`, as `send_task`
    calls it: results live in the job store, so no result options); each job's message is that
    one with the job's own ids and argument. Celery's builder costs about a millisecond a call
    on the development machine, the copy a few microseconds."""

    _STAND_IN = "job-id"

    def __init__(self, app):
        task = app.amqp.create_task_message(self._STAND_IN, TASK_NAME, [self._STAND_IN], {},
                                            reply_to=app.thread_oid, ignore_result=None)
        self.content_type, self.content_encoding, _ = serialization.dumps(task.body, serializer="json")
        self.headers, self.properties, self.body_rest = task.headers, task.properties, list(task.body[1:])

    def message(self, job_id: str, queue: str) -> tuple[str, str]:
        if queue not in QUEUES:
            raise ValueError(f"queue must be one of {QUEUES}, got {queue!r}")
        task_id = str(uuid.uuid4())
        body = json.dumps([[job_id], *self.body_rest]).encode(self.content_encoding)
        message = {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": self.content_encoding,
            "content-type": self.content_type,
            "headers": {**self.headers, "id": task_id, "root_id": task_id, "argsrepr": repr([job_id])},
            "properties": {**self.properties, "correlation_id": task_id, "delivery_mode": 2, "priority": 0,
                           "body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": queue},
                           "delivery_tag": str(uuid.uuid4())},
        }
        return broker_lists(queue)[0], json.dumps(message)


def broker_message(app, job_id: str, queue: str) -> tuple[str, str]:
    """:meth:`TaskMessages.message` of a one-off TaskMessages (a caller sending many keeps one)."""
    return TaskMessages(app).message(job_id, queue)


def enqueue(app, job_id: str, queue: str) -> None:
    """Send the job's task to `queue` ("interactive" or "batch")."""
    if queue not in QUEUES:
        raise ValueError(f"queue must be one of {QUEUES}, got {queue!r}")
    # No exchange or routing key: Celery then publishes on the anonymous exchange, straight onto
    # the queue's list. Naming the direct exchange made kombu read the exchange's binding table
    # from Redis (and build a Redis client for it) on every publish.
    app.send_task(TASK_NAME, args=[job_id], queue=queue)


PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's Redis transport: one list per step of message priority


def broker_lists(queue: str, priority_steps: tuple[int, ...] = PRIORITY_STEPS) -> list[str]:
    """The Redis lists in which Celery's Redis transport keeps `queue`'s waiting messages."""
    return [queue if step == 0 else f"{queue}\x06\x16{step}" for step in priority_steps]


def job_of_delivery(raw: bytes) -> str | None:
    """The job id of an entry of UNACKED_KEY (kombu's `[message, exchange, routing key]`, the
    message in Celery's protocol 2), or None for an entry that is not an Atelier job."""
    try:
        message = json.loads(raw)[0]
        if message["headers"].get("task") != TASK_NAME:
            return None
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return str(json.loads(body)[0][0])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def queue_depth(client, queue: str, priority_steps: tuple[int, ...] = PRIORITY_STEPS) -> int:
    """Messages waiting in `queue` (Celery's Redis transport keeps one list per priority step)."""
    pipe = client.pipeline(transaction=False)
    for name in broker_lists(queue, priority_steps):
        pipe.llen(name)
    return int(sum(pipe.execute()))
