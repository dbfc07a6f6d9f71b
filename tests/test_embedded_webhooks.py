"""`atelier up` runs the webhook dispatcher beside its worker: a job of the real stack (a real
worker process on a tiny exported model) reaches a real receiver signed, and a dispatcher that
dies is replaced and resumes from Redis (docs/DEPLOY.md, "Webhooks")."""

from __future__ import annotations

import os
import signal
import time

import pytest

from atelier_cli.up import EmbeddedStack
from bench.tiny_models import tiny_repository as export_tiny
from clients import Client
from services.common.settings import Settings
from services.common.webhooks import config
from tests.gateway.webhook_receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180, func_only=True)]


def test_up_sends_a_jobs_events_to_the_tenants_endpoint_and_replaces_a_dead_dispatcher(tmp_path):
    repository = export_tiny(tmp_path / "models")
    state = tmp_path / "state"
    receiver = Receiver([])
    _, secret = config.add_endpoint(state / "webhooks.json", "local", receiver.url, ("started", "finished"))
    receiver.secrets = [secret]
    settings = Settings.from_env({}, model_repository=repository, default_model="tiny", grpc_listen="127.0.0.1:0",
                                 gateway_metrics_port=0, worker_metrics_port=0, webhooks_metrics_port=0)
    try:
        with EmbeddedStack(settings, state_dir=state, worker_concurrency=1) as stack, \
                Client(stack.address, stack.api_key) as client:
            first = client.submit("red apple", steps=2, seeds=[1])
            receiver.wait_for(lambda: len(receiver.accepted()) == 2, timeout=60)
            dispatcher = stack.dispatcher
            os.killpg(dispatcher.pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while stack.dispatcher is dispatcher and time.monotonic() < deadline:
                time.sleep(0.1)
            assert stack.dispatcher is not dispatcher
            second = client.submit("blue car", steps=2, seeds=[2])
            receiver.wait_for(lambda: len(receiver.accepted()) == 4, timeout=60)
    finally:
        receiver.stop()
    got = [(r.payload["data"]["job_id"], r.payload["type"]) for r in receiver.accepted()]
    assert sorted(got) == sorted((j.job_id, t) for j in (first, second) for t in ("job.started", "job.finished"))
    assert all(r.payload is not None for r in receiver.received)
