"""Signed webhooks end to end: a real gateway, the scripted worker writing through the real job
store, the real dispatcher, and a real HTTP receiver that verifies every signature with the
SDK's verifier (docs/API.md, "Webhooks"; docs/RELIABILITY.md, "Webhooks")."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from atelier.v1 import generation_pb2 as gen
from clients import Client
from clients.webhooks import WebhookVerificationError, verify
from services.common.webhooks import config
from services.common.webhooks.deliveries import WebhookStore
from services.common.webhooks.signing import headers, signature
from services.webhooks.dispatcher import Dispatcher, backoff
from tests.gateway.conftest import gateway_settings
from tests.gateway.helpers import Stubs, auth, request, violations
from tests.gateway.webhook_receiver import HANG, OK, Receiver

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(webhook_timeout_seconds=0.5, webhook_retry_base_seconds=0.05, webhook_retry_max_seconds=0.2,
            webhook_max_attempts=4)


@pytest.fixture
def webhooks_file(keys) -> Path:
    return Path(keys.path).with_name("webhooks.json")  # beside the keys file: where services look by default


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(*args, **kwargs) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def dispatch(redis_url, keys, model_repo, redis_client):
    started: list[Dispatcher] = []

    def start(**overrides) -> Dispatcher:
        settings = gateway_settings(redis_url, keys, model_repo, **{**FAST, **overrides})
        started.append(Dispatcher(settings, redis_client, poll_seconds=0.05).start())
        return started[-1]

    yield start
    for d in started:
        d.stop()


def _finished(receiver: Receiver, jobs: int = 1):
    return lambda: sum(1 for r in receiver.accepted() if r.payload and r.payload["type"] == "job.finished") >= jobs


def _settled(receiver: Receiver, store: WebhookStore, jobs: int = 1):
    """Every event of the jobs answered for. Deliveries run side by side and may arrive out of order
    (docs/RELIABILITY.md, "Webhooks"), so `job.finished` can come before an artifact: wait until it
    came and nothing is left due (a claimed delivery stays due until its endpoint answered)."""
    finished = _finished(receiver, jobs)
    return lambda: finished() and store.pending() == 0


def _counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_standard_webhooks_signature_and_the_sdk_verifier():
    # The example of the Standard Webhooks specification (standardwebhooks.com).
    secret, msg, stamp, body = ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                1614265330, b'{"test": 2432232314}')
    assert signature(secret, msg, stamp, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify(body, headers([secret], msg, stamp, body), secret, now=stamp) == {"test": 2432232314}
    # Rotation: both secrets sign, so a receiver holding either accepts.
    new = config.new_secret()
    both = headers([new, secret], msg, stamp, body)
    assert len(both["webhook-signature"].split()) == 2
    assert verify(body, both, new, now=stamp) and verify(body, both, [secret], now=stamp)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(body, both, config.new_secret(), now=stamp)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(body + b" ", both, secret, now=stamp)
    with pytest.raises(WebhookVerificationError, match="off this clock"):
        verify(body, both, secret, now=stamp + 301)  # a replay after the tolerance
    with pytest.raises(WebhookVerificationError, match="missing header webhook-id"):
        verify(body, {k: v for k, v in both.items() if k != "webhook-id"}, secret, now=stamp)


def test_backoff_doubles_up_to_its_cap_with_jitter_of_at_most_half():
    import random

    rng = random.Random(7)
    for attempts, full in [(1, 1.0), (2, 2.0), (3, 4.0), (8, 10.0)]:
        waits = [backoff(attempts, 1.0, 10.0, rng) for _ in range(200)]
        assert full / 2 <= min(waits) and max(waits) <= full and max(waits) - min(waits) > full / 4


def test_a_jobs_events_reach_the_tenants_endpoint_signed_each_once(make_stack, keys, webhooks_file, receivers,
                                                                   dispatch, redis_client):
    receiver = receivers([])
    _, secret = config.add_endpoint(webhooks_file, "alice", receiver.url, config.EVENTS, 3600)
    receiver.secrets = [secret]
    stack = make_stack(start_worker=True)
    dispatch()
    stubs = Stubs(stack.address)
    try:
        handle = stubs.gen.Submit(request(seeds=[1, 2], labels={"shot": "42"}), metadata=auth(keys.alice))
        other = stubs.gen.Submit(request(seeds=[3]), metadata=auth(keys.bob))  # bob has no webhooks
    finally:
        stubs.close()
    store = WebhookStore(redis_client)
    receiver.wait_for(_settled(receiver, store))
    got = receiver.accepted()
    assert all(r.payload is not None for r in got), "every delivery verifies"
    assert len({r.msg_id for r in got}) == len(got), "nothing delivered twice"
    by_type = sorted(r.payload["type"] for r in got)
    # progress at most once an hour: the first only; previews and queued are never sent
    assert by_type == ["job.artifact", "job.artifact", "job.finished", "job.progress", "job.started"]
    for r in got:
        data = r.payload["data"]
        assert data["job_id"] == handle.job_id and data["labels"] == {"shot": "42"}
        assert r.msg_id == f"evt_{handle.job_id}_{data['event_id']}"
    artifacts = sorted((r.payload["data"] for r in got if r.payload["type"] == "job.artifact"),
                       key=lambda d: d["index"])
    assert [a["seed"] for a in artifacts] == [1, 2]
    assert all(base64.b64decode(a["data_base64"]).startswith(b"\x89PNG") for a in artifacts)
    finished = next(r.payload["data"] for r in got if r.payload["type"] == "job.finished")
    assert finished["state"] == "SUCCEEDED" and finished["images"] == 2
    assert store.following(100) == []
    assert other.job_id not in {r.payload["data"]["job_id"] for r in got}


def test_a_job_names_its_own_endpoint_under_an_allowed_prefix(make_stack, keys, webhooks_file, receivers, dispatch):
    receiver = receivers([])
    receiver.secrets = [config.allow_job_urls(webhooks_file, "alice", receiver.url.rsplit("/", 1)[0] + "/")]
    stack = make_stack(start_worker=True)
    dispatch()
    stubs = Stubs(stack.address)
    try:
        with Client(stack.address, keys.alice) as sdk:  # the SDK names events as the docs do
            sdk.submit("a red fox", seeds=[1], webhook={"url": receiver.url, "events": ["finished"]})
        refused = {
            "webhook.url": (keys.alice, gen.JobWebhook(url="http://10.0.0.1/steal")),
            "webhook": (keys.bob, gen.JobWebhook(url=receiver.url)),  # bob may name none
            "webhook.events[0]": (keys.alice, gen.JobWebhook(url=receiver.url, events=[9])),
        }
        for field, (key, bad) in refused.items():
            with pytest.raises(grpc.RpcError) as err:
                stubs.gen.Submit(request(seeds=[1], webhook=bad), metadata=auth(key))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in violations(err.value)
        with pytest.raises(grpc.RpcError) as err:
            stubs.gen.Submit(request(seeds=[1], webhook=gen.JobWebhook(url="ftp://x/")), metadata=auth(keys.alice))
        assert "http:// or https://" in violations(err.value)["webhook.url"]
    finally:
        stubs.close()
    receiver.wait_for(_finished(receiver))
    assert [r.payload["type"] for r in receiver.accepted()] == ["job.finished"]


def test_a_failing_endpoint_gets_the_same_id_again_until_it_accepts(make_stack, keys, webhooks_file, receivers,
                                                                    dispatch):
    receiver = receivers([], script=lambda n, m: 503 if n < 2 else OK)
    _, secret = config.add_endpoint(webhooks_file, "alice", receiver.url, ("finished",))
    receiver.secrets = [secret]
    failures = _counter("atelier_webhook_delivery_failures_total", reason="status")
    stack = make_stack(start_worker=True)
    dispatch()
    stubs = Stubs(stack.address)
    try:
        stubs.gen.Submit(request(seeds=[1]), metadata=auth(keys.alice))
    finally:
        stubs.close()
    receiver.wait_for(_finished(receiver))
    assert [r.answer for r in receiver.received] == [503, 503, OK]
    assert len({r.msg_id for r in receiver.received}) == 1, "every attempt carries the event's id"
    assert all(r.payload is not None for r in receiver.received), "every attempt is signed"
    assert _counter("atelier_webhook_delivery_failures_total", reason="status") - failures == 2


def test_an_endpoint_that_hangs_times_out_and_is_tried_again(make_stack, keys, webhooks_file, receivers, dispatch):
    receiver = receivers([], script=lambda n, m: HANG if n == 0 else OK)
    _, secret = config.add_endpoint(webhooks_file, "alice", receiver.url, ("started", "finished"))
    receiver.secrets = [secret]
    timeouts = _counter("atelier_webhook_delivery_failures_total", reason="timeout")
    stack = make_stack(start_worker=True)
    dispatch(webhook_concurrency=1)  # one sender: a hang that blocked the job would show here
    stubs = Stubs(stack.address)
    try:
        handle = stubs.gen.Submit(request(seeds=[1]), metadata=auth(keys.alice))
    finally:
        stubs.close()
    receiver.wait_for(_finished(receiver))
    receiver.wait_for(lambda: len(receiver.accepted()) == 2)
    first = receiver.received[0]
    assert first.answer == HANG and first.msg_id in {r.msg_id for r in receiver.accepted()}
    assert _counter("atelier_webhook_delivery_failures_total", reason="timeout") - timeouts >= 1
    assert stack.store.get(handle.job_id).state == "SUCCEEDED"


def test_after_the_last_attempt_a_delivery_is_a_dead_letter_and_can_be_sent_again(
        make_stack, keys, webhooks_file, receivers, dispatch, redis_client, redis_url):
    down = {"on": True}
    receiver = receivers([], script=lambda n, m: 500 if down["on"] else OK)
    _, secret = config.add_endpoint(webhooks_file, "alice", receiver.url, ("finished",))
    receiver.secrets = [secret]
    dead = _counter("atelier_webhook_dead_letters_total")
    stack = make_stack(start_worker=True)
    dispatch(webhook_max_attempts=3)
    store = WebhookStore(redis_client)
    stubs = Stubs(stack.address)
    try:
        handle = stubs.gen.Submit(request(seeds=[1]), metadata=auth(keys.alice))
    finally:
        stubs.close()
    receiver.wait_for(lambda: store.dead_letters() != [])
    (letter,) = store.dead_letters()
    assert letter["attempts"] == "3" and letter["last_error"] == "HTTP 500" and letter["job_id"] == handle.job_id
    assert len(receiver.received) == 3 and store.pending() == 0
    assert _counter("atelier_webhook_dead_letters_total") - dead == 1
    # the CLI reads the same list
    env = {**os.environ, "ATELIER_REDIS_URL": redis_url}
    out = subprocess.run([sys.executable, "-m", "atelier_cli", "webhooks", "dead-letters"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert letter["id"] in out
    down["on"] = False
    assert store.redeliver(letter["id"], now=0) and store.dead_letters() == []
    receiver.wait_for(_finished(receiver))
    assert receiver.accepted()[0].msg_id == letter["msg_id"]


def test_events_of_jobs_that_ran_while_no_dispatcher_ran_are_delivered_when_one_starts(
        make_stack, keys, webhooks_file, receivers, dispatch, redis_client):
    receiver = receivers([])
    _, secret = config.add_endpoint(webhooks_file, "alice", receiver.url, ("started", "artifact", "finished"))
    receiver.secrets = [secret]
    stack = make_stack(start_worker=True)
    stubs = Stubs(stack.address)
    try:
        handles = [stubs.gen.Submit(request(seeds=[i]), metadata=auth(keys.alice)) for i in range(3)]
    finally:
        stubs.close()
    # the jobs finish with no dispatcher at all: delivery is never in their way
    receiver.wait_for(lambda: all(stack.store.get(h.job_id).state == "SUCCEEDED" for h in handles))
    assert receiver.received == []
    dispatch()
    receiver.wait_for(_settled(receiver, WebhookStore(redis_client), jobs=3))
    assert len(receiver.accepted()) == 9 and len({r.msg_id for r in receiver.accepted()}) == 9


def _dispatcher_process(redis_url: str, keys_path: Path) -> subprocess.Popen:
    env = {**os.environ, "ATELIER_REDIS_URL": redis_url, "ATELIER_API_KEYS_FILE": str(keys_path),
           "ATELIER_WEBHOOKS_METRICS_PORT": "0", "ATELIER_WEBHOOK_TIMEOUT_SECONDS": "1",
           "ATELIER_WEBHOOK_RETRY_BASE_SECONDS": "0.05", "ATELIER_WEBHOOK_RETRY_MAX_SECONDS": "0.2"}
    return subprocess.Popen([sys.executable, "-m", "atelier_cli", "webhooks", "run"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def test_a_dispatcher_killed_mid_delivery_loses_no_event_and_repeats_only_the_same_ids(
        make_stack, keys, webhooks_file, receivers, redis_url):
    receiver = receivers([], script=lambda n, m: HANG if n == 0 else OK)
    _, secret = config.add_endpoint(webhooks_file, "alice", receiver.url, ("started", "artifact", "finished"))
    receiver.secrets = [secret]
    stack = make_stack(start_worker=True)
    first = _dispatcher_process(redis_url, keys.path)
    second = None
    try:
        stubs = Stubs(stack.address)
        try:
            handles = [stubs.gen.Submit(request(seeds=[i, i + 10]), metadata=auth(keys.alice)) for i in range(2)]
        finally:
            stubs.close()
        receiver.wait_for(lambda: len(receiver.received) >= 1)  # the first delivery hangs in the dispatcher
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        receiver.release.set()
        second = _dispatcher_process(redis_url, keys.path)
        # 2 jobs x (started, 2 artifacts, finished); the one cut off comes back when its lease lapses
        receiver.wait_for(lambda: len({r.msg_id for r in receiver.accepted()}) >= 8, timeout=60)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
    accepted = receiver.accepted()
    expected = {(h.job_id, t) for h in handles for t in ("job.started", "job.artifact", "job.artifact", "job.finished")}
    assert {(r.payload["data"]["job_id"], r.payload["type"]) for r in accepted} == expected
    assert len({r.msg_id for r in accepted}) == 8, "each of the 8 events accepted, none lost"
    assert receiver.received[0].msg_id in {r.msg_id for r in accepted}, "the one cut off was sent again, same id"
    assert all(r.payload is not None for r in receiver.received)


def test_more_followed_jobs_than_a_page_are_all_served(make_stack, keys, webhooks_file, receivers, dispatch):
    receiver = receivers([])
    _, secret = config.add_endpoint(webhooks_file, "alice", receiver.url, ("finished",))
    receiver.secrets = [secret]
    stack = make_stack(start_worker=True)
    dispatch().fanout.page_size = 2  # 5 jobs: three pages a pass
    stubs = Stubs(stack.address)
    try:
        handles = [stubs.gen.Submit(request(seeds=[i]), metadata=auth(keys.alice)) for i in range(5)]
    finally:
        stubs.close()
    receiver.wait_for(_finished(receiver, jobs=5))
    assert sorted(r.payload["data"]["job_id"] for r in receiver.accepted()) == sorted(h.job_id for h in handles)


def test_two_dispatchers_at_once_send_each_event_once(make_stack, keys, webhooks_file, receivers, dispatch):
    receiver = receivers([])
    _, secret = config.add_endpoint(webhooks_file, "alice", receiver.url, ("started", "artifact", "finished"))
    receiver.secrets = [secret]
    stack = make_stack(start_worker=True)
    dispatch(), dispatch()  # a rollout's overlap, or two replicas
    stubs = Stubs(stack.address)
    try:
        for i in range(4):
            stubs.gen.Submit(request(seeds=[i, i + 10]), metadata=auth(keys.alice))
    finally:
        stubs.close()
    receiver.wait_for(_finished(receiver, jobs=4))
    receiver.wait_for(lambda: len(receiver.accepted()) == 16)
    assert len({r.msg_id for r in receiver.received}) == len(receiver.received) == 16


def test_a_fan_out_read_before_another_dispatcher_moved_the_cursor_schedules_nothing(redis_client):
    """What keeps two dispatchers (or one restarted over a slow one) from sending an event twice:
    the script schedules only if the job's cursor is still the one the dispatcher read."""
    from services.common.webhooks.deliveries import Delivery

    store = WebhookStore(redis_client)
    redis_client.zadd(store.following_key, {"job1": 1})
    d = Delivery("ep:evt_job1_1-0", "evt_job1_1-0", "alice", "ep", "http://127.0.0.1:9/", "job1", "started", "{}")
    assert store.commit("job1", "", "1-0", False, 60, 0.0, {}, [d])  # the first dispatcher
    store.delivered(d)  # ... which sent it at once
    assert not store.commit("job1", "", "1-0", False, 60, 0.0, {}, [d])  # the second read the cursor before
    assert store.pending() == 0
    assert store.commit("job1", "1-0", "2-0", True, 60, 0.0, {}, [])  # the finished event ends the following
    assert store.following(10) == [] and not store.commit("job1", "2-0", "3-0", False, 60, 0.0, {}, [d])
