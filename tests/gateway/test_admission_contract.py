"""Each admission refusal (services/gateway/admission.py) tells the client which limit it hit, with
the numbers, and is counted under that limit's name; its retry delay and an admitted job's ETA
are the ones computed here by hand from the workers' slots and measured times."""

from __future__ import annotations

import grpc
import pytest

from services.common import readiness
from services.common.embedded_redis import free_port
from services.common.jobs import JobSpec, Priority, PromptSpec
from services.common.store import JobStore
from services.common.webhooks.deliveries import WebhookStore, job_record
from services.gateway.admission import Admission, Quotas
from services.gateway.errors import Overloaded
from tests.gateway.helpers import Stubs, auth, request
from tests.gateway.test_metrics_contract import scraped
from tests.services import toy_runtime

pytestmark = pytest.mark.redis


def rejected(port: int, reason: str) -> float:
    return scraped(port, f'atelier_jobs_rejected_total{{reason="{reason}"}}')


@pytest.mark.parametrize("limit, settings, accepted, message", [
    ("tenant_in_flight", dict(tenant_max_jobs_in_flight=2), 2,
     "tenant has 2 jobs queued or running, the limit is 2"),
    ("tenant_rate", dict(tenant_jobs_per_minute=3), 3,
     "tenant submitted 3 jobs this minute, the limit is 3 a minute"),
    ("queue_full", dict(max_queue_depth_interactive=3), 0,
     "the interactive queue holds 3 jobs, its limit is 3"),
])
def test_a_refusal_names_its_limit_with_the_numbers(make_stack, limit, settings, accepted, message):
    port = free_port()
    stack = make_stack(gateway_metrics_port=port, **settings)
    if limit == "queue_full":
        stack.redis.rpush("interactive", *[b"{}"] * 3)  # three jobs waiting, as Celery keeps them
    stubs = Stubs(stack.address)
    before = rejected(port, limit)
    for _ in range(accepted):
        stubs.gen.Submit(request(), metadata=auth(stack.keys.alice))
    with pytest.raises(grpc.RpcError) as refused:
        stubs.gen.Submit(request(), metadata=auth(stack.keys.alice))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == message
    assert rejected(port, limit) - before == 1.0
    stubs.close()


# In process: Admission on the real job store, with workers whose measured timings make every
# job of the toy plan cost exactly `fixed` seconds, so each retry delay and ETA is known.

def admission_of(store, *, in_flight=100, per_minute=100, waiting=100, workers=()) -> Admission:
    return Admission(store, Quotas(in_flight, per_minute, {Priority.INTERACTIVE: waiting, Priority.BATCH: waiting}),
                     workers=lambda: list(workers))


def worker(concurrency: int, fixed: float) -> readiness.WorkerStatus:
    return readiness.WorkerStatus(f"w{concurrency}-{fixed}", ("toy/1",), concurrency=concurrency,
                                  timings={"toy/1": {"16x16": {"row": 0.0, "fixed": fixed}}})


@pytest.fixture
def job_store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix="adm:", result_ttl_seconds=600)


SPEC = toy_runtime.planned(JobSpec(prompts=(PromptSpec("a red apple", "", "flat"),), seeds=(1,)))
NOW = 60 * 29_000_000 + 10.0  # ten seconds into a rate window


def refusal(admission: Admission, now: float = NOW) -> Overloaded:
    with pytest.raises(Overloaded) as refused:
        admission.admit("acme", SPEC, 6, now=now)
    return refused.value


@pytest.mark.parametrize("fixed, retry", [(7.5, 7.5), (0.25, 1.0)])
def test_a_tenant_at_its_in_flight_limit_retries_after_one_job_s_time_at_least_a_second(job_store, fixed, retry):
    admission = admission_of(job_store, in_flight=1, workers=[worker(1, fixed)])
    admission.admit("acme", SPEC, 6, now=NOW)
    refused = refusal(admission)
    assert (refused.reason, refused.retry_after) == ("tenant_in_flight", retry)


@pytest.mark.parametrize("workers, fixed, retry", [
    ([(2, 4.0), (0, 4.0)], 4.0, 4.0),  # 3 jobs ahead, 3 slots (a worker counts one at least): one job time
    ([(1, 4.0)], 4.0, 12.0),  # 3 jobs ahead, 1 slot
    ([(1, 30.0)], 30.0, 60.0),  # at most a minute
    ([(3, 0.5)], 0.5, 1.0),  # at least a second
    ([], 0.0, 1.0),  # no worker: one slot, no measured time
])
def test_a_full_queue_retries_after_the_jobs_ahead_share_the_slots(job_store, workers, fixed, retry):
    admission = admission_of(job_store, waiting=3, workers=[worker(c, f) for c, f in workers])
    for _ in range(3):
        admission.admit("acme", SPEC, 6, now=NOW)
    refused = refusal(admission)
    assert (refused.reason, refused.retry_after) == ("queue_full", retry)
    assert str(refused) == "the interactive queue holds 3 jobs, its limit is 3"


def test_a_job_s_eta_counts_the_jobs_ahead_per_slot(job_store):
    admission = admission_of(job_store, workers=[worker(2, 4.0), worker(1, 4.0)])
    placed = [admission.admit("acme", SPEC, 6, now=NOW) for _ in range(4)]
    assert [(p.position, p.eta_seconds) for p in placed] == [(0, 4.0), (1, 4.0), (2, 4.0), (3, 8.0)]
    stored = job_store.get(placed[0].job_id)
    assert (stored.steps_total, stored.created_at) == (6, NOW)


@pytest.mark.parametrize("into_window, retry", [(10.0, 50.0), (59.75, 0.5)])
def test_a_tenant_over_its_rate_retries_when_its_minute_ends(job_store, into_window, retry):
    start = NOW - 10.0
    admission = admission_of(job_store, per_minute=2)
    for _ in range(2):
        admission.admit("acme", SPEC, 6, now=start)
    refused = refusal(admission, now=start + into_window)
    assert (refused.reason, refused.retry_after) == ("tenant_rate", retry)
    assert str(refused) == "tenant submitted 2 jobs this minute, the limit is 2 a minute"
    assert admission.admit("acme", SPEC, 6, now=start + 60.0).position == 2  # a new minute, a new count


def test_with_no_worker_live_jobs_queue_for_one_slot_at_the_default_estimate(job_store):
    admission = admission_of(job_store)
    placed = [admission.admit("acme", SPEC, 6, now=NOW) for _ in range(2)]
    one_job = placed[0].eta_seconds
    assert one_job > 0 and placed[1].eta_seconds == 2 * one_job


def test_a_spec_without_a_plan_is_admitted_with_no_estimate(job_store):
    admission = admission_of(job_store, workers=[worker(1, 4.0)])
    placed = admission.admit("acme", SPEC.with_(plan=None), 6, now=NOW)
    assert (placed.position, placed.eta_seconds) == (0, 0.0)


def test_without_a_snapshot_admission_reads_the_live_workers_from_redis(job_store):
    readiness.report(job_store.client, job_store.prefix, worker(2, 4.0), ttl=60)
    admission = Admission(job_store, Quotas(100, 100, {Priority.INTERACTIVE: 100, Priority.BATCH: 100}))
    placed = [admission.admit("acme", SPEC, 6, now=NOW) for _ in range(3)]
    assert [p.eta_seconds for p in placed] == [4.0, 4.0, 8.0]  # two slots of 4 s jobs


def test_an_admitted_job_keeps_the_id_given_is_sent_with_its_message_and_followed_only_with_webhooks(job_store):
    # The gateway's Submit hands these three to the store's single admission step (issue 19): a job
    # asked for with a webhook that the store did not follow would never be delivered.
    admission = admission_of(job_store)
    hooked = admission.admit("acme", SPEC, 6, now=NOW, webhooks=job_record(None), job_id="job-hooked",
                             broker_message=("interactive", "the job's message"))
    plain = admission.admit("acme", SPEC, 6, now=NOW)
    assert (hooked.job_id, hooked.created, hooked.sent, plain.created, plain.sent) == (
        "job-hooked", True, True, True, False)
    assert job_store.client.lrange("interactive", 0, -1) == [b"the job's message"]
    assert job_store.unsent(older_than_seconds=0, now=NOW + 3600) == [plain.job_id]  # the caller sends it
    assert WebhookStore(job_store.client, prefix="adm:").following(10) == ["job-hooked"]
