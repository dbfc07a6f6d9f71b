"""A worker SIGKILLed mid-job under `atelier up` with default settings (lease, visibility
timeout, time limits): its job finishes on the replacement worker, each image delivered
once, byte-identical to the same job run without a fault."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from atelier_cli.up import EmbeddedStack
from clients import Client
from services.common.jobs import JobState
from services.common.settings import Settings
from services.common.store import JobStore
from tests.chaos.stack import outcome, pictures, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

IMAGES = 24  # three chunks of the batching denoiser (16 rows, two per image with guidance)


def test_a_job_on_a_sigkilled_worker_finishes_on_its_replacement_with_the_same_images(tiny_models, tmp_path,
                                                                                      record_property):
    settings = Settings.from_env({}, model_repository=tiny_models, default_model="tiny", grpc_listen="127.0.0.1:0",
                                 gateway_metrics_port=0, worker_metrics_port=0)
    with EmbeddedStack(settings, state_dir=tmp_path / "up", worker_concurrency=2) as stack, \
            Client(stack.address, stack.api_key, timeout=10.0) as client:
        store = JobStore(redis.Redis.from_url(stack.settings.redis_url), stack.settings.key_prefix)
        request = {"steps": 30, "count": IMAGES, "seeds": range(IMAGES)}
        job_id = client.submit("red apple", **request).job_id
        wait_until(lambda: store.get(job_id).images_done >= 8, 60, "the first attempt's first chunk of images")
        assert not store.get(job_id).is_final, "the job finished before the kill: make it longer"
        first = stack.worker
        os.killpg(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: store.get(job_id).is_final, 120, "the killed worker's job to finish")
        recovered = time.monotonic() - killed_at
        record_property("seconds_from_kill_to_finish", round(recovered, 1))
        print(f"kill -> finished: {recovered:.1f} s")
        assert stack.worker is not first and stack.worker_restarts == 1

        seen = outcome(store, job_id)
        assert seen["state"] == JobState.SUCCEEDED and seen["finished"] == 1
        assert seen["deliveries"] == {i: 1 for i in range(IMAGES)}, "an image was lost or delivered twice"
        assert seen["attempts"] == [1, 2]
        clean_id = client.submit("red apple", **request).job_id
        wait_until(lambda: store.get(clean_id).is_final, 120, "the clean run")
        assert pictures(store, job_id) == pictures(store, clean_id)
