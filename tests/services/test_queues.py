"""Publishing a job's task on a real Redis broker (services.common.queues.enqueue)."""

from __future__ import annotations

import base64
import json

import pytest
from celery import Celery

from services.common.queues import TASK_NAME, celery_config, enqueue, queue_depth
from services.common.settings import Settings

pytestmark = pytest.mark.redis


@pytest.fixture
def app(redis_url):
    app = Celery("atelier-test", set_as_current=False)
    app.conf.update(celery_config(Settings.from_env({}, redis_url=redis_url)))
    yield app
    app.close()


def test_a_task_lands_on_its_queue_carrying_only_the_job_id(app, redis_client):
    enqueue(app, "job-1", "batch")
    enqueue(app, "job-2", "interactive")
    assert queue_depth(redis_client, "batch") == 1 and queue_depth(redis_client, "interactive") == 1
    message = json.loads(redis_client.lindex("batch", 0))
    assert message["headers"]["task"] == TASK_NAME
    assert json.loads(base64.b64decode(message["body"]))[0] == ["job-1"]


def test_publishing_reads_no_exchange_binding_table(app, redis_client):
    enqueue(app, "job-1", "interactive")
    # Straight onto the queue's list: no routing lookup per publish, and nothing lost when the
    # exchange's binding table is gone (a flushed or failed-over Redis).
    redis_client.delete(*redis_client.keys("_kombu.binding.*") or ["none"])
    enqueue(app, "job-2", "interactive")
    assert queue_depth(redis_client, "interactive") == 2


def test_an_unknown_queue_is_refused(app):
    with pytest.raises(ValueError, match="queue must be one of"):
        enqueue(app, "job-1", "nightly")
