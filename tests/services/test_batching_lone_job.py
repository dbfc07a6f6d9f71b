"""A job that is the only one sampling calls the model in its own thread (no hand-off to the
batching owner and back, issue 19); with company its calls are stacked by the owner as before."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from services.worker.batching import BatchingDenoiser, DenoiserClosed, NonFiniteOutput


def test_a_lone_job_calls_the_model_in_its_own_thread():
    threads = []

    def model(x, sigma, cond):
        threads.append(threading.current_thread())
        return x * 0.5

    with BatchingDenoiser(model, max_batch=8, wait_ms=500) as denoiser:
        with denoiser.session():
            for _ in range(3):
                out = denoiser(np.ones((2, 3)), np.ones(2))
        assert denoiser.stats.calls == 3 and dict(denoiser.stats.requests_per_call) == {1: 3}
    assert threads == [threading.current_thread()] * 3
    np.testing.assert_array_equal(out, np.full((2, 3), 0.5))


def test_two_jobs_are_stacked_by_the_owner_thread():
    threads = []

    def model(x, sigma, cond):
        threads.append(threading.current_thread())
        return x

    with BatchingDenoiser(model, max_batch=8, wait_ms=2000) as denoiser:
        barrier = threading.Barrier(2)

        def job():
            with denoiser.session():
                barrier.wait(timeout=10)
                for _ in range(4):
                    denoiser(np.ones((1, 2)), np.ones(1))
                barrier.wait(timeout=10)  # neither leaves before both are done: every call has company

        workers = [threading.Thread(target=job) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=20)
        assert dict(denoiser.stats.requests_per_call) == {2: 4}
    assert {t.name for t in threads} == {"batching-denoiser-model"}


def test_a_lone_job_s_errors_and_non_finite_rows_reach_it():
    def failing(x, sigma, cond):
        raise RuntimeError("runtime failed")

    with BatchingDenoiser(failing) as denoiser, denoiser.session(), pytest.raises(RuntimeError, match="runtime failed"):
        denoiser(np.ones((1, 2)), np.ones(1))
    with BatchingDenoiser(lambda x, s, c: x * np.nan) as denoiser, denoiser.session(), \
            pytest.raises(NonFiniteOutput):
        denoiser(np.ones((1, 2)), np.ones(1))
    denoiser = BatchingDenoiser(lambda x, s, c: x)
    denoiser.close()
    with denoiser.session(), pytest.raises(DenoiserClosed):
        denoiser(np.ones((1, 2)), np.ones(1))
