"""Concurrent jobs all ride in every call: no job is left for a second, half-empty call.

Regression: a caller counted as "waiting" until its own thread woke up after being served, so
right after each call the owner believed every job was already waiting and ran whatever had
arrived first; jobs then split into cohorts that alternated (bench/batching.py saw 4 of 8 jobs
per call and no throughput gain)."""

from __future__ import annotations

import threading

import numpy as np

from services.worker.batching import BatchingDenoiser

JOBS, STEPS = 4, 12


def test_every_call_carries_every_active_job() -> None:
    def model(x, sigma, cond):
        return x * 0.5

    # A long wait: only "every active job has a request in" (or max_batch) may close a batch.
    with BatchingDenoiser(model, max_batch=64, wait_ms=2000, name="test-full") as denoiser:
        barrier = threading.Barrier(JOBS)

        def job(i: int) -> None:
            x = np.full((2, 3), float(i))
            with denoiser.session():
                barrier.wait(timeout=30)
                for _ in range(STEPS):
                    x = denoiser(x, np.ones(2)) + 1.0

        threads = [threading.Thread(target=job, args=(i,)) for i in range(JOBS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        stats = denoiser.stats
    assert stats.calls == STEPS
    assert dict(stats.requests_per_call) == {JOBS: STEPS}
