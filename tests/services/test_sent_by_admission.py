"""A job stored and sent in one step: the admission script pushes the broker message that
services.common.queues.broker_message makes (issue 19), on a real Redis, read back by kombu's
own Redis transport as a Celery worker reads it."""

from __future__ import annotations

import base64
import json

import pytest
from kombu import Connection, Queue

from services.common.jobs import JobSpec, PromptSpec
from services.common.queues import (
    TASK_NAME,
    UNACKED_KEY,
    TaskMessages,
    broker_message,
    enqueue,
    job_of_delivery,
    queue_depth,
)
from services.common.store import JobStore, Quota, QuotaExceeded, new_job_id
from tests.services import test_queues

pytestmark = pytest.mark.redis

app = test_queues.app  # the Celery app on the test Redis


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix="t:", result_ttl_seconds=60)


def spec(**changes) -> JobSpec:
    return JobSpec(prompts=(PromptSpec("a red apple"),), seeds=(1,), steps=4, sampler="euler").with_(**changes)


def quota(**changes) -> Quota:
    values = dict(max_in_flight=10, max_waiting=10, per_minute=100, window=1, window_seconds=60, slots=1,
                  job_seconds=1.0)
    return Quota(**{**values, **changes})


def test_the_message_is_the_one_celery_publishes_but_for_its_ids(app, redis_client):
    enqueue(app, "job-1", "batch")
    published = json.loads(redis_client.lpop("batch"))
    name, made = broker_message(app, "job-1", "batch")
    made = json.loads(made)
    assert name == "batch"

    def without_ids(m: dict) -> dict:
        headers = {k: v for k, v in m["headers"].items() if k not in ("id", "root_id", "origin")}
        properties = {k: v for k, v in m["properties"].items() if k not in ("correlation_id", "delivery_tag")}
        return {**m, "headers": headers, "properties": properties}

    assert without_ids(made) == without_ids(published)
    assert made["headers"]["id"] == made["headers"]["root_id"] == made["properties"]["correlation_id"]
    assert made["properties"]["delivery_tag"] != published["properties"]["delivery_tag"]
    assert json.loads(base64.b64decode(made["body"]))[0] == ["job-1"]
    with pytest.raises(ValueError, match="queue must be one of"):
        broker_message(app, "job-1", "bulk")


def test_one_template_makes_each_job_its_own_message(app, redis_client):
    messages = TaskMessages(app)
    first, second = (json.loads(messages.message(job, "interactive")[1]) for job in ("job-a", "job-b"))
    assert [json.loads(base64.b64decode(m["body"]))[0] for m in (first, second)] == [["job-a"], ["job-b"]]
    assert [m["headers"]["argsrepr"] for m in (first, second)] == ["['job-a']", "['job-b']"]
    ids = {first["headers"]["id"], second["headers"]["id"], first["properties"]["delivery_tag"],
           second["properties"]["delivery_tag"]}
    assert len(ids) == 4 and TaskMessages._STAND_IN not in json.dumps([first, second])


def test_admission_stores_and_sends_in_one_step_with_no_outbox_entry(app, store, redis_client):
    job_id = new_job_id()
    placed = store.admit("acme", spec(), quota(), job_id=job_id, now=1000.0,
                         broker_message=broker_message(app, job_id, "interactive"))
    assert placed.created and placed.sent and placed.job_id == job_id
    assert queue_depth(redis_client, "interactive") == 1
    assert job_of_delivery(json.dumps([json.loads(redis_client.lindex("interactive", 0)), "", "interactive"])) == job_id
    assert store.unsent(older_than_seconds=0, now=2000.0) == []  # nothing for a sweeper to send again
    assert store.get(job_id).state == "QUEUED"

    other = new_job_id()  # without a message: the old path, an outbox entry and nothing on the broker
    placed = store.admit("acme", spec(), quota(), job_id=other, now=1000.0)
    assert placed.created and not placed.sent
    assert store.unsent(older_than_seconds=0, now=2000.0) == [other]
    assert queue_depth(redis_client, "interactive") == 1


def test_a_refused_or_repeated_submit_sends_nothing(app, store, redis_client):
    full = new_job_id()
    with pytest.raises(QuotaExceeded):
        store.admit("acme", spec(), quota(max_in_flight=0), job_id=full,
                    broker_message=broker_message(app, full, "interactive"))
    first = new_job_id()
    store.admit("acme", spec(request_id="r1"), quota(), job_id=first,
                broker_message=broker_message(app, first, "interactive"))
    again = new_job_id()
    placed = store.admit("acme", spec(request_id="r1"), quota(), job_id=again,
                         broker_message=broker_message(app, again, "interactive"))
    assert not placed.created and not placed.sent and placed.job_id == first
    assert queue_depth(redis_client, "interactive") == 1  # the first job's message only


def test_a_message_needs_the_job_id_it_was_made_for(app, store):
    with pytest.raises(ValueError, match="job_id"):
        store.admit("acme", spec(), quota(), broker_message=broker_message(app, "x", "interactive"))


def test_kombus_redis_transport_delivers_it_with_late_ack_bookkeeping(app, store, redis_url, redis_client):
    job_id = new_job_id()
    store.admit("acme", spec(), quota(), job_id=job_id, broker_message=broker_message(app, job_id, "interactive"))
    options = app.conf.broker_transport_options
    with Connection(redis_url, transport_options=options) as conn:
        received = []
        with conn.Consumer(Queue("interactive", no_declare=True), accept=["json"],
                           callbacks=[lambda body, message: received.append((body, message))]):
            conn.drain_events(timeout=5)
        ((body, message),) = received
        assert message.headers["task"] == TASK_NAME and body[0] == [job_id]
        # Delivered but not acknowledged: kombu keeps it where the reaper looks (services/worker/leases.py).
        (raw,) = redis_client.hvals(UNACKED_KEY)
        assert job_of_delivery(raw) == job_id
        message.ack()
        assert redis_client.hlen(UNACKED_KEY) == 0
