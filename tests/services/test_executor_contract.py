"""How the executor (services/worker/executor.py) ends a job that stops while it samples, in
process: the deadline, the soft time limit and success each leave their state, code and
message, and the worker's counters count the steps and images of the model and sampler that ran."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from services.common.jobs import ErrorCode, JobState
from services.common.settings import Settings
from services.worker.executor import JobExecutor
from tests.services.test_pipeline import models, store, submit  # noqa: F401 - fixtures

pytestmark = pytest.mark.redis


@pytest.fixture
def slow_toy(monkeypatch):
    """Each denoiser call of the toy model takes 0.25 s, so a job is still sampling when it stops."""
    monkeypatch.setenv("ATELIER_TOY_CALL_SECONDS", "0.25")


def executor_with(store, models, **settings) -> JobExecutor:  # noqa: F811 - the fixtures
    return JobExecutor(store, models, Settings.from_env({}, default_model="toy", progress_interval_ms=0, **settings),
                       name="test-worker")


def test_a_deadline_passing_while_sampling_expires_the_job(store, models, slow_toy):  # noqa: F811
    job_id = submit(store, steps=8, deadline=time.time() + 0.8)
    assert executor_with(store, models).run(job_id) == JobState.EXPIRED
    record = store.get(job_id)
    assert (record.error_code, record.error_message) == (ErrorCode.NONE, "deadline passed while running")
    assert 0 < record.steps_done < 8


def test_the_soft_time_limit_fails_the_job_as_a_timeout(store, models, slow_toy):  # noqa: F811
    job_id = submit(store, steps=12)
    assert executor_with(store, models, task_soft_time_limit=1, task_time_limit=30).run(job_id) == JobState.FAILED
    record = store.get(job_id)
    assert (record.error_code, record.error_message) == (ErrorCode.TIMEOUT, "job ran longer than 1 s")


def test_a_finished_job_has_no_error_and_counts_its_steps_and_images(store, models):  # noqa: F811
    def counted():
        return (REGISTRY.get_sample_value("atelier_sampler_steps_total", {"model": "toy", "sampler": "heun"}) or 0.0,
                REGISTRY.get_sample_value("atelier_images_total", {"model": "toy"}) or 0.0,
                REGISTRY.get_sample_value("atelier_sampling_seconds_count", {"model": "toy"}) or 0.0)

    before = counted()
    job_id = submit(store, seeds=(1, 2), steps=3, sampler="heun")
    assert executor_with(store, models).run(job_id) == JobState.SUCCEEDED
    record = store.get(job_id)
    assert (record.error_code, record.error_message) == (ErrorCode.NONE, "")
    steps, images, samplings = (b - a for a, b in zip(before, counted(), strict=True))
    assert (steps, images, samplings) == (record.steps_done, 2.0, 1.0)
