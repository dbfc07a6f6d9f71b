"""Admission limits hold exactly under bursts of concurrent Submits, and every slot comes back.

A real gateway on loopback, the worker paused: 300 Submits from 30 clients at once (threads,
each with a channel of its own) against a queue cap, a per-tenant in-flight quota or the
per-minute limit. Exactly the limit is accepted, every refusal is RESOURCE_EXHAUSTED with a
RetryInfo and names the limit. Then the worker drains the accepted jobs, every one finishes,
and a second burst is again admitted exactly up to the limit: each slot was given back once,
none leaked. Every way a job ends (succeeded, failed, cancelled, expired queued or running,
sent late by the outbox) gives its slots back exactly once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import pytest

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import generation_pb2_grpc, types_pb2
from services.common import queues
from services.common.jobs import ErrorCode, JobSpec, JobState, Priority, PromptSpec
from services.gateway.outbox import OutboxSweeper
from services.gateway.server import serve
from tests.gateway.conftest import (  # noqa: F401 - fixtures
    MODEL,
    ScriptedWorker,
    gateway_settings,
    keys,
    make_stack,
    model_repo,
)
from tests.gateway.helpers import Stubs, auth, request, retry_delay
from tests.gateway.test_end_to_end import write_toy_model
from tests.services.test_worker_integration import PREFIX, Workers

pytestmark = pytest.mark.redis

CLIENTS = 30
SUBMITS = 300
CAP = 20
QUOTA = 10
DEADLINE = 20.0  # seconds any one call, or the whole drain, may take


@dataclass
class Burst:
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (api key, job id)
    refused: list[tuple[grpc.StatusCode, float | None, str]] = field(default_factory=list)

    def accepted_for(self, key: str) -> int:
        return sum(k == key for k, _ in self.accepted)


def burst(address: str, api_keys: list[str], **fields) -> Burst:
    """SUBMITS Submits from CLIENTS threads released together; client i uses api_keys[i % len]."""
    barrier = threading.Barrier(CLIENTS)
    lock = threading.Lock()
    found = Burst()

    def client(i: int) -> None:
        key = api_keys[i % len(api_keys)]
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=DEADLINE)
            stub = generation_pb2_grpc.GenerationStub(channel)
            barrier.wait(timeout=DEADLINE)
            for _ in range(SUBMITS // CLIENTS):
                try:
                    handle = stub.Submit(request(**fields), metadata=auth(key), timeout=DEADLINE)
                    outcome = ("accepted", (key, handle.job_id))
                except grpc.RpcError as err:
                    outcome = ("refused", (err.code(), retry_delay(err), err.details()))
                with lock:
                    getattr(found, outcome[0]).append(outcome[1])

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))  # re-raises a client's failure
    assert len(found.accepted) + len(found.refused) == SUBMITS
    return found


def assert_refusals(found: Burst, limit_text: str) -> None:
    for code, delay, details in found.refused:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert delay is not None and delay > 0, details
        assert limit_text in details, details


def wait_all_finished(address: str, accepted: list[tuple[str, str]]) -> dict[str, int]:
    """Poll GetJob until every accepted job is final; returns how many ended in each state."""
    pending = dict((job_id, key) for key, job_id in accepted)
    states: dict[str, int] = {}
    deadline = time.monotonic() + DEADLINE
    with grpc.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} accepted jobs never finished"
            for job_id, key in list(pending.items()):
                job = stub.GetJob(gen.GetJobRequest(job_id=job_id), metadata=auth(key), timeout=DEADLINE)
                if job.state in (types_pb2.JOB_STATE_QUEUED, types_pb2.JOB_STATE_RUNNING):
                    continue
                name = types_pb2.JobState.Name(job.state)
                states[name] = states.get(name, 0) + 1
                del pending[job_id]
            time.sleep(0.05)
    return states


def assert_counters_back_to_zero(store, tenants) -> None:
    for queue in Priority.ALL:
        assert store.client.scard(store.waiting_key(queue)) == 0, queue
    for tenant in tenants:
        assert store.count_in_flight(tenant) == 0, tenant


@pytest.mark.parametrize("priority", [types_pb2.PRIORITY_INTERACTIVE, types_pb2.PRIORITY_BATCH])
def test_queue_cap_holds_under_a_burst_and_frees_every_slot(make_stack, priority):  # noqa: F811 - fixture
    name = Priority.INTERACTIVE if priority == types_pb2.PRIORITY_INTERACTIVE else Priority.BATCH
    stack = make_stack(max_queue_depth_interactive=CAP, max_queue_depth_batch=CAP,
                       tenant_max_jobs_in_flight=10 * SUBMITS, tenant_jobs_per_minute=10 * SUBMITS)
    api_keys = [stack.keys.alice, stack.keys.bob]
    for trial in range(2):
        found = burst(stack.address, api_keys, priority=priority, seeds=[7])
        assert len(found.accepted) == CAP, f"trial {trial}: {len(found.accepted)} accepted, cap {CAP}"
        assert_refusals(found, f"the {name} queue holds {CAP} jobs, its limit is {CAP}")
        worker = ScriptedWorker(stack.store, stack.queue).start()
        try:
            assert wait_all_finished(stack.address, found.accepted) == {"JOB_STATE_SUCCEEDED": CAP}
        finally:
            worker.stop()
        assert_counters_back_to_zero(stack.store, ("alice", "bob"))


def test_tenant_in_flight_quota_holds_under_a_burst_for_each_tenant(make_stack):  # noqa: F811 - fixture
    stack = make_stack(tenant_max_jobs_in_flight=QUOTA, max_queue_depth_interactive=10 * SUBMITS,
                       tenant_jobs_per_minute=10 * SUBMITS)
    alice, bob = stack.keys.alice, stack.keys.bob
    for trial in range(2):
        found = burst(stack.address, [alice, bob], seeds=[7])
        counts = (found.accepted_for(alice), found.accepted_for(bob))
        assert counts == (QUOTA, QUOTA), f"trial {trial}: accepted (alice, bob) = {counts}, quota {QUOTA}"
        assert_refusals(found, f"jobs queued or running, the limit is {QUOTA}")
        worker = ScriptedWorker(stack.store, stack.queue).start()
        try:
            assert wait_all_finished(stack.address, found.accepted) == {"JOB_STATE_SUCCEEDED": 2 * QUOTA}
        finally:
            worker.stop()
        assert_counters_back_to_zero(stack.store, ("alice", "bob"))


def test_per_minute_limit_holds_under_a_burst(make_stack):  # noqa: F811 - fixture
    stack = make_stack(tenant_jobs_per_minute=CAP, tenant_max_jobs_in_flight=10 * SUBMITS,
                       max_queue_depth_interactive=10 * SUBMITS)
    left_in_minute = 60 - time.time() % 60
    if left_in_minute < 5:  # a burst across two minutes would rightly be admitted twice
        time.sleep(left_in_minute + 0.1)
    found = burst(stack.address, [stack.keys.alice, stack.keys.bob], seeds=[7])
    counts = (found.accepted_for(stack.keys.alice), found.accepted_for(stack.keys.bob))
    assert counts == (CAP, CAP), f"accepted (alice, bob) = {counts}, limit {CAP} a minute"
    assert_refusals(found, f"the limit is {CAP} a minute")


@pytest.mark.slow
def test_a_burst_through_the_broker_to_a_real_worker(redis_url, keys, tmp_path):  # noqa: F811 - fixture
    """The same burst with the real Celery enqueue (Celery's list fills after each job is stored)
    and a real worker process started afterwards: the cap holds and every accepted job succeeds."""
    root = write_toy_model(tmp_path / "repo")
    settings = gateway_settings(
        redis_url, keys, root, key_prefix=PREFIX, default_model="toy",
        max_queue_depth_interactive=CAP, tenant_max_jobs_in_flight=10 * SUBMITS,
        tenant_jobs_per_minute=10 * SUBMITS, visibility_timeout=6, task_time_limit=5, task_soft_time_limit=4,
    )
    workers = Workers(redis_url, tmp_path)
    gateway = serve(settings, health_interval=0.2)
    try:
        found = burst(gateway.address, [keys.alice, keys.bob], seeds=[3], steps=2)
        assert len(found.accepted) == CAP, f"{len(found.accepted)} accepted, cap {CAP}"
        assert_refusals(found, f"its limit is {CAP}")
        assert queues.queue_depth(gateway.redis, Priority.INTERACTIVE) == CAP
        workers.start(concurrency=4, model_repository=str(root))
        assert wait_all_finished(gateway.address, found.accepted) == {"JOB_STATE_SUCCEEDED": CAP}
        assert queues.queue_depth(gateway.redis, Priority.INTERACTIVE) == 0
        assert_counters_back_to_zero(gateway.jobs.store, ("alice", "bob"))
    finally:
        gateway.stop(grace=0)
        workers.stop_all()


def test_every_terminal_path_gives_the_slots_back_exactly_once(make_stack):  # noqa: F811 - fixture
    """Queue cap 1 and in-flight quota 1: after each way a job can end, the next Submit is
    accepted (its slots came back) and the one after it refused (they came back only once)."""
    stack = make_stack(max_queue_depth_interactive=1, tenant_max_jobs_in_flight=1, tenant_jobs_per_minute=1000)
    store, alice = stack.store, stack.keys.alice
    stubs = Stubs(stack.address)

    def submit() -> str:
        return stubs.gen.Submit(request(seeds=[1]), metadata=auth(alice), timeout=DEADLINE).job_id

    def refused() -> None:
        with pytest.raises(grpc.RpcError) as err:
            submit()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_delay(err.value)

    def fail(job_id):
        attempt = store.begin_attempt(job_id, "w@test")
        assert store.finish(job_id, attempt, JobState.FAILED, ErrorCode.INTERNAL, "boom")

    def expire_running(job_id):
        attempt = store.begin_attempt(job_id, "w@test")
        assert store.finish(job_id, attempt, JobState.EXPIRED, ErrorCode.NONE, "deadline passed")

    def cancel(job_id):
        stubs.gen.CancelJob(gen.CancelJobRequest(job_id=job_id), metadata=auth(alice), timeout=DEADLINE)

    endings = {
        "SUCCEEDED": stack.worker.run,
        "FAILED": fail,
        "CANCELLED": cancel,
        "EXPIRED": lambda job_id: store.finish(job_id, None, JobState.EXPIRED, ErrorCode.NONE, "deadline passed"),
        "EXPIRED while running": expire_running,
    }
    try:
        for expected, end in endings.items():
            job_id = submit()
            refused()
            end(job_id)
            end_state = store.get(job_id).state
            assert end_state == expected.split()[0], (expected, end_state)
            with contextlib.suppress(Exception):
                end(job_id)  # a second ending of a final job changes nothing
            assert_counters_back_to_zero(store, ("alice",))

        # Stored by a gateway that died before handing it to the broker: it holds its slots
        # until the outbox sends it and it runs.
        spec = JobSpec(prompts=(PromptSpec("a fox"),), seeds=(1,), model=MODEL, model_version="1")
        stored = stack.gateway.jobs.admission.admit("alice", spec, 3, now=time.time())
        refused()
        assert OutboxSweeper(store, stack.queue, grace_seconds=0).sweep_once() == [stored.job_id]
        assert stack.queue.sent[-1] == (stored.job_id, Priority.INTERACTIVE)
        stack.worker.run(stored.job_id)
        assert store.get(stored.job_id).state == JobState.SUCCEEDED
        assert_counters_back_to_zero(store, ("alice",))
        submit()
        refused()
    finally:
        stubs.close()
