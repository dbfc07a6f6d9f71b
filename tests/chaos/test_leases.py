"""Leases and the reaper on a real Redis (services/worker/leases.py), without worker processes:
who may begin a job, when a lapsed job is handed back, and that the dead attempt is fenced off."""

from __future__ import annotations

import time

import kombu
import pytest
import redis
from celery import Celery

from services.common import events as ev
from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobSpec, JobState, PromptSpec
from services.common.queues import UNACKED_KEY, celery_config, enqueue, job_of_delivery
from services.common.settings import Settings
from services.common.store import JobStore
from services.worker.executor import JobExecutor
from services.worker.leases import Leases, Reaper
from services.worker.models import ModelRegistry
from tests.chaos.stack import AofRedis
from tests.services import toy_runtime

pytestmark = pytest.mark.redis

LEASE = 0.3


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix="l:", result_ttl_seconds=600)


def new_job(store, priority="batch") -> str:
    spec = JobSpec(prompts=(PromptSpec("a gem", "", "flat"),), seeds=(1, 2), priority=priority)
    job_id, _ = store.create("acme", toy_runtime.planned(spec))
    store.sent(job_id)
    return job_id


class Sent(list):
    def __call__(self, job_id, queue):
        self.append((job_id, queue))


def reaper(store, sent) -> Reaper:
    return Reaper(store, sent, LEASE)


def test_a_second_delivery_cannot_claim_or_begin_a_job_a_live_holder_has(store):
    a, b = Leases(store, LEASE, "a"), Leases(store, LEASE, "b")
    job_id = new_job(store)
    holder = a.claim(job_id)
    assert holder and b.claim(job_id) is None
    assert store.begin_attempt(job_id, "b", lease="b/other") is None
    assert store.begin_attempt(job_id, "a", lease=holder) == 1
    assert b.claim(job_id) is None, "a running job with a live lease was taken over"


def test_renewal_keeps_a_lease_and_a_lapsed_job_is_handed_back_once_and_fenced(store):
    a = Leases(store, LEASE, "a")
    job_id = new_job(store, priority="interactive")
    holder = a.claim(job_id)
    attempt = store.begin_attempt(job_id, "a", lease=holder)
    sent = Sent()
    reapers = [reaper(store, sent), reaper(store, sent)]
    for _ in range(4):  # renewed: never lapses
        time.sleep(LEASE / 2)
        assert a.renew() == []
        assert [r.reap_once() for r in reapers] == [[], []]
    time.sleep(LEASE * 1.5)  # the worker "died": no renewal
    assert sorted(len(r.reap_once()) for r in reapers) == [0, 1]
    assert sent == [(job_id, "interactive")]
    assert store.get(job_id).state == JobState.QUEUED and store.unsent(0.0) == []
    # The dead attempt's writes are refused; its renewal finds the lease gone.
    assert store.add_artifact(job_id, attempt, ev.Artifact(index=0), b"late") is None
    assert not store.finish(job_id, attempt, JobState.SUCCEEDED)
    assert a.renew() == [job_id] and a.held() == {}
    # The handed-back job starts again as attempt 2 for whoever claims it next.
    b = Leases(store, LEASE, "b")
    assert store.begin_attempt(job_id, "b", lease=b.claim(job_id)) == 2
    started = [e.data["attempt"] for e in store.read_events(job_id) if e.kind == EventKind.STARTED]
    assert started == [1, 2]


def test_release_hands_back_or_just_lets_go_and_finished_jobs_are_never_reaped(store):
    a = Leases(store, LEASE, "a")
    back, done = new_job(store), new_job(store)
    hb, hd = a.claim(back), a.claim(done)
    store.begin_attempt(back, "a", lease=hb)
    attempt = store.begin_attempt(done, "a", lease=hd)
    assert a.release(back, hb, hand_back=True)
    assert store.get(back).state == JobState.QUEUED
    assert store.finish(done, attempt, JobState.SUCCEEDED)
    time.sleep(LEASE * 1.5)  # `done`'s lease lapses without being released: its worker died after finishing
    sent = Sent()
    assert reaper(store, sent).reap_once() == [] and sent == []
    assert store.get(done).state == JobState.SUCCEEDED
    assert store.client.zcard("l:leases") == 0


def test_after_a_redis_restart_the_reaper_gives_live_workers_a_lease_period_to_renew(tmp_path):
    server = AofRedis(tmp_path / "aof")
    server.start()
    client = redis.Redis.from_url(server.url)
    try:
        store = JobStore(client, key_prefix="l:")
        a = Leases(store, LEASE, "a")
        job_id = new_job(store)
        store.begin_attempt(job_id, "a", lease=a.claim(job_id))
        sent = Sent()
        r = reaper(store, sent)
        for _ in range(10):  # Redis up for a second (its uptime's unit), the worker renewing
            time.sleep(LEASE / 3)
            assert a.renew() == []
        assert r.reap_once() == []
        server.stop()
        with pytest.raises(redis.ConnectionError):
            r.reap_once()
        time.sleep(LEASE * 1.5)
        server.start()  # the lease lapsed during the outage, and the AOF kept it
        assert r.reap_once() == [], "reaped before live workers could renew"
        time.sleep(1.0)
        assert r.reap_once() == [job_id] and sent == [(job_id, "batch")]
    finally:
        client.close()
        server.close()


def test_a_delivery_no_worker_leased_is_sent_again_and_one_of_a_finished_job_is_dropped(store, redis_url):
    """A worker killed between taking a message off the broker and leasing its job: the message
    waits in the broker's unacked hash, unleased, until the reaper sends the job again."""
    sender = Celery("leases-test", set_as_current=False)
    sender.conf.update(celery_config(Settings.from_env({}, redis_url=redis_url)))
    stranded, finished, leased = new_job(store), new_job(store), new_job(store)
    for job_id in (stranded, finished, leased):
        enqueue(sender, job_id, "batch")
    sender.close()
    with kombu.Connection(redis_url) as conn:  # the worker about to die takes all three
        channel = conn.channel()
        channel.qos.restore_at_shutdown = False  # it dies: nothing goes back to the queue
        assert all(channel.basic_get("batch", no_ack=False) for _ in range(3))
    a = Leases(store, LEASE, "a")
    store.finish(finished, None, JobState.SUCCEEDED)
    store.begin_attempt(leased, "a", lease=a.claim(leased))
    sent = Sent()
    r = reaper(store, sent)
    assert r.reap_once() == []  # just delivered: a live worker would lease it at once
    for _ in range(8):
        time.sleep(LEASE / 3)
        a.renew()
    assert r.reap_once() == [stranded] and sent == [(stranded, "batch")]
    assert store.get(stranded).state == JobState.QUEUED and store.unsent(0.0) == []
    left = [job_of_delivery(raw) for raw in store.client.hvals(UNACKED_KEY)]
    assert left == [leased], "only the leased job's delivery is left to its worker"


class RuntimeWithoutDevice(toy_runtime.ToyRuntime):
    """A runtime that fails where no job's own error handling is: asked for its provider."""

    @property
    def execution_provider(self) -> str:
        raise RuntimeError("the runtime lost its device")


def test_a_failure_outside_sampling_fails_the_job_instead_of_stranding_it(store):
    registry = ModelRegistry(lambda model, version: RuntimeWithoutDevice(model, version or "1"))
    executor = JobExecutor(store, registry, Settings.from_env({}, default_model="toy"), name="w")
    job_id = new_job(store)
    try:
        assert executor.run(job_id) == JobState.FAILED
    finally:
        registry.close()
    job = store.get(job_id)
    assert job.error_code == ErrorCode.INTERNAL and "lost its device" in job.error_message
    assert store.client.zcard("l:leases") == 0 and executor.leases.held() == {}
