"""A stopped job stops sampling: denoiser calls counted after a cancel, a deadline, a time limit
and a worker shutdown.

The store refuses a cancelled job's progress whether or not the sampler goes on, so the
job's `steps_done` cannot show that it stopped; the number of model calls can. The stop is
triggered from inside denoiser call `STOP_AT` of the real batching denoiser, so what follows is
exact: the rest of the step in flight (heun evaluates twice a step) and not one call more.
"""

from __future__ import annotations

import threading

import pytest

from services.common.events import EventKind
from services.common.jobs import JobRecord, JobSpec, PromptSpec
from services.common.store import JobStore
from services.worker.batching import BatchingDenoiser
from services.worker.pipeline import generate
from services.worker.reporting import (
    DeadlineExceeded,
    JobStopped,
    StoreReporter,
    TimeLimitExceeded,
    WorkerShuttingDown,
)
from tests.services import toy_runtime
from tests.services.test_reporting import Clock

pytestmark = pytest.mark.redis

STOP_AT = 7  # heun: the first of step 4's two evaluations
STEPS = 50
CALLS_PER_STEP = {"euler": 1, "dpmpp_2m": 1, "heun": 2}
class CountingModel:
    """The toy model's denoiser, counted; `stop()` runs inside call number `at`."""

    def __init__(self, model, at: int, stop):
        self.model, self.at, self.stop = model, at, stop
        self.calls = 0

    def __call__(self, x, sigma, cond):
        self.calls += 1
        out = self.model(x, sigma, cond)
        if self.calls == self.at:
            self.stop()
        return out


def stop_of(kind: str, store: JobStore, job_id: str, clock: Clock, shutdown: threading.Event):
    """(what the stop does, the reporter options it needs, the exception the job must end with)."""
    if kind == "cancel":
        return (lambda: store.cancel(job_id)), {}, JobStopped
    if kind == "deadline":
        return (lambda: setattr(clock, "now", clock.now + 100)), {"deadline": clock.now + 50}, DeadlineExceeded
    if kind == "time limit":
        return (lambda: setattr(clock, "now", clock.now + 100)), {"time_limit_seconds": 50}, TimeLimitExceeded
    return shutdown.set, {"stop_event": shutdown}, WorkerShuttingDown


@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("kind", ["cancel", "deadline", "time limit", "shutdown"])
def test_the_sampler_stops_within_the_step_in_flight(redis_client, kind, sampler):
    store = JobStore(redis_client, key_prefix="t:")
    spec = JobSpec(prompts=(PromptSpec("a red apple", "", "flat"),), seeds=(4, 2), output_format="raw_rgba8",
                   steps=STEPS, sampler=sampler, guidance_scale=3.0)
    spec = toy_runtime.planned(spec)
    job_id, _ = store.create("acme", spec)
    attempt = store.begin_attempt(job_id, "w1")
    clock, shutdown = Clock(), threading.Event()  # the reporter's clock, moved only by the stops
    stop, options, stopped_by = stop_of(kind, store, job_id, clock, shutdown)
    reporter = StoreReporter(store, job_id, attempt, progress_interval_ms=0, check_interval_ms=0, clock=clock,
                             **options)
    runtime = toy_runtime.ToyRuntime()
    model = CountingModel(runtime.denoiser(), STOP_AT, stop)
    with BatchingDenoiser(model, max_batch=16, wait_ms=0) as denoiser, pytest.raises(stopped_by):
        generate(JobRecord(job_id, "acme", spec), runtime, lambda tiling, shape: denoiser, reporter)
    assert model.calls - STOP_AT <= CALLS_PER_STEP[sampler] - 1, f"{model.calls - STOP_AT} calls after the stop"
    assert not [e for e in store.read_events(job_id) if e.kind == EventKind.ARTIFACT]


def test_an_unstopped_job_makes_every_call_the_counts_assume(redis_client):
    # The bound above is only as good as CALLS_PER_STEP: a whole job costs exactly that many calls.
    store = JobStore(redis_client, key_prefix="t:")
    for sampler, per_step in CALLS_PER_STEP.items():
        spec = JobSpec(prompts=(PromptSpec("a red apple", "", "flat"),), seeds=(4, 2), output_format="raw_rgba8",
                       steps=6, sampler=sampler, guidance_scale=3.0)
        spec = toy_runtime.planned(spec)
        job_id, _ = store.create("acme", spec)
        reporter = StoreReporter(store, job_id, store.begin_attempt(job_id, "w1"), progress_interval_ms=0)
        runtime = toy_runtime.ToyRuntime()
        model = CountingModel(runtime.denoiser(), 0, lambda: None)
        with BatchingDenoiser(model, max_batch=16, wait_ms=0) as denoiser:
            assert generate(JobRecord(job_id, "acme", spec), runtime, lambda t, s: denoiser, reporter) == 2
        # Heun's last step is a plain Euler step (Karras et al. 2022, Alg. 1: no correction to sigma=0).
        assert model.calls == 6 * per_step - (per_step - 1), sampler
