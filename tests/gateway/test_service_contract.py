"""The gateway's job service (services/gateway/service.py) called directly, in process, on the
real job store: every call while Redis is down answers Unavailable with its retry delay, a job
the broker refused is failed and never swept again, and Watch's ends and positions."""

from __future__ import annotations

import socket

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.common.jobs import ErrorCode, JobSpec, JobState, PromptSpec
from services.common.store import JobNotFound, JobStore
from services.gateway import metrics
from services.gateway.admission import Admission, Quotas
from services.gateway.errors import InvalidRequest, Unavailable
from services.gateway.history import HistoryFilter, HistoryQuery
from services.gateway.service import JobService

pytestmark = pytest.mark.redis


def job_spec(**changes) -> JobSpec:
    return JobSpec(prompts=(PromptSpec("a red apple", "", "google"),), seeds=(1,)).with_(**changes)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_with(stack, client, enqueue) -> JobService:
    """The stack's gateway's job service on another Redis client and broker."""
    live = stack.gateway.jobs
    store = JobStore(client, live.store.prefix, 600)
    quotas = Quotas.from_settings(stack.gateway.settings)
    return JobService(store, live.catalog, Admission(store, quotas, workers=lambda: []), enqueue, live.limits)


@pytest.fixture
def service(stack) -> JobService:
    return stack.gateway.jobs


def test_every_call_answers_unavailable_with_its_retry_delay_while_redis_is_down(service, stack):
    dead = redis_lib.Redis(port=closed_port(), socket_connect_timeout=1, socket_timeout=1,
                           retry=Retry(NoBackoff(), 0))  # refused at once, not after redis-py's retries
    down = service_with(stack, dead, stack.queue)
    calls = {
        "submit": lambda: down.submit("alice", job_spec(), bulk=False),
        "get": lambda: down.get("alice", "some-job"),
        "cancel": lambda: down.cancel("alice", "some-job"),
        "list": lambda: down.list_jobs("alice", HistoryQuery(10, "", HistoryFilter())),
        "watch": lambda: next(down.watch("alice", "some-job")),
    }
    for name, call in calls.items():
        with pytest.raises(Unavailable) as err:
            call()
        assert err.value.retry_after == 1.0, name
        assert str(err.value).startswith("the job store is unavailable ("), name
        assert str(err.value).endswith("); retry shortly"), name
    assert stack.queue.sent == []


def test_a_job_the_broker_refuses_is_failed_and_out_of_the_outbox(service, stack):
    def broker_down(job_id, queue):
        raise ConnectionRefusedError("broker down")

    refusing = service_with(stack, stack.redis, broker_down)
    with pytest.raises(ConnectionRefusedError):
        refusing.submit("alice", job_spec(), bulk=False)
    assert stack.store.in_flight("alice") == set()  # a failed job holds no slot
    (record,) = stack.store.history("alice", 10).records
    assert (record.state, record.error_code, record.error_message) == (
        JobState.FAILED, ErrorCode.INTERNAL, "the gateway could not queue the job")
    assert stack.store.unsent(older_than_seconds=0, now=record.created_at + 3600) == []


def test_a_submission_is_counted_under_its_queue_and_a_refusal_as_invalid(service, stack):
    def count(metric, **labels):
        return metric.labels(**labels)._value.get()

    submitted, invalid = count(metrics.SUBMITTED, queue="batch"), count(metrics.REJECTED, reason="invalid")
    made = service.submit("alice", job_spec(priority="batch"), bulk=False)
    assert (made.existing, made.record.state, stack.queue.sent) == (False, JobState.QUEUED,
                                                                     [(made.record.job_id, "batch")])
    assert stack.store.unsent(older_than_seconds=0, now=made.record.created_at + 3600) == []
    with pytest.raises(InvalidRequest):
        service.submit("alice", job_spec(prompts=(PromptSpec("a red apple", "", "no-such-style"),)), bulk=False)
    assert (count(metrics.SUBMITTED, queue="batch") - submitted,
            count(metrics.REJECTED, reason="invalid") - invalid) == (1, 1)


def test_a_request_id_gives_back_the_same_job_with_no_second_enqueue(service, stack):
    first = service.submit("alice", job_spec(request_id="req-1"), bulk=False)
    again = service.submit("alice", job_spec(request_id="req-1"), bulk=False)
    assert (again.existing, again.record.job_id, again.position, again.eta_seconds) == (
        True, first.record.job_id, 0, 0.0)
    assert len(stack.queue.sent) == 1
    other = service.submit("bob", job_spec(request_id="req-1"), bulk=False)  # request ids are per tenant
    assert not other.existing and other.record.job_id != first.record.job_id


def test_watch_of_a_final_job_replays_its_log_from_any_position(service, stack):
    job_id = service.submit("alice", job_spec(), bulk=False).record.job_id
    service.cancel("alice", job_id)
    events = list(service.watch("alice", job_id))
    assert [e.kind for e in events] == ["queued", "finished"]
    assert [e.id for e in service.watch("alice", job_id, after=events[0].id)] == [events[1].id]


def test_watch_of_a_running_job_follows_it_to_its_final_event(service, stack):
    job_id = service.submit("alice", job_spec(), bulk=False).record.job_id
    seen = []
    for event in service.watch("alice", job_id):
        seen.append(event.kind)
        if event.kind == "queued":
            service.cancel("alice", job_id)
    assert seen == ["queued", "finished"]


def test_watch_stops_when_its_caller_goes_away(service, stack):
    job_id = service.submit("alice", job_spec(), bulk=False).record.job_id
    asked = []

    def keep_going():
        asked.append(1)
        return len(asked) < 2

    assert [e.kind for e in service.watch("alice", job_id, keep_going=keep_going)] == ["queued"]
    assert [e.kind for e in service.watch("alice", job_id, keep_going=lambda: False)] == []


def test_watch_refuses_another_tenant_s_job_and_a_malformed_position(service, stack):
    job_id = service.submit("alice", job_spec(), bulk=False).record.job_id
    with pytest.raises(JobNotFound):
        next(service.watch("bob", job_id))
    with pytest.raises(InvalidRequest) as err:
        next(service.watch("alice", job_id, after="not-an-id"))
    assert [field for field, _ in err.value.violations] == ["after_event_id"]
