"""Late acks stay: the broker still redelivers a dead worker's message after the visibility
timeout. Such a delivery, and any second message of a job, must find the job final or held by
a live attempt, and run nothing. Here a worker is SIGKILLed mid-job, a second worker takes the
job over through the reaper, and the job's message is delivered again while that attempt runs."""

from __future__ import annotations

import pytest
import redis
from celery import Celery

from services.common.jobs import JobSpec, JobState, PromptSpec
from services.common.queues import celery_config, enqueue
from services.common.settings import Settings
from services.common.store import JobStore
from tests.chaos.stack import Processes, outcome, wait_until
from tests.services import toy_runtime

pytestmark = [pytest.mark.slow, pytest.mark.redis]

STEPS = 60


def test_a_second_delivery_of_a_job_a_live_worker_runs_starts_nothing(redis_url, tmp_path):
    settings = Settings.from_env({}, redis_url=redis_url, runtime_loader="tests.services.toy_runtime:load",
                                 default_model="toy", job_lease_seconds=1.0, progress_interval_ms=0,
                                 worker_metrics_port=0)
    procs = Processes(settings, tmp_path)
    store = JobStore(redis.Redis.from_url(redis_url), settings.key_prefix)
    sender = Celery("chaos-sender", set_as_current=False)
    sender.conf.update(celery_config(settings))
    try:
        first = procs.start(concurrency=1, ATELIER_TOY_CALL_SECONDS="0.02")
        spec = JobSpec(prompts=(PromptSpec("a blue gem", "", "flat"),), seeds=(3, 4), steps=STEPS,
                       guidance_scale=1.0, output_format="raw_rgba8")
        job_id, _ = store.create("acme", toy_runtime.planned(spec))
        enqueue(sender, job_id, "interactive")
        wait_until(lambda: store.get(job_id).steps_done >= 10, 30, "the first attempt's progress")
        procs.kill(first)
        procs.start(concurrency=2, ATELIER_TOY_CALL_SECONDS="0.05")
        wait_until(lambda: store.get(job_id).attempt == 2 and store.get(job_id).steps_done >= 5, 30,
                   "the second attempt's progress")
        enqueue(sender, job_id, "interactive")  # what the broker's redelivery of the dead worker's message is
        wait_until(lambda: store.get(job_id).is_final, 30, "the job to finish")
        seen = outcome(store, job_id)
        assert seen["state"] == JobState.SUCCEEDED and seen["finished"] == 1
        assert seen["attempts"] == [1, 2], "the second delivery started an attempt of its own"
        assert seen["deliveries"] == {0: 1, 1: 1}
        assert "held by a live worker; dropping this delivery" in procs.logs()
    finally:
        sender.close()
        procs.close()
