"""The batching denoiser with real threads and a deterministic numpy denoiser."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from diffusion.noise import SeededNoise, initial_noise
from diffusion.samplers import SAMPLERS
from diffusion.schedules import karras_sigmas
from diffusion.toy import GaussianMixture
from services.worker.batching import BatchingDenoiser, NonFiniteOutput

SHAPE = (2, 4, 4)
DIM = int(np.prod(SHAPE))


def gaussian() -> GaussianMixture:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((DIM, DIM)) / np.sqrt(DIM)
    return GaussianMixture.gaussian(rng.standard_normal(DIM) * 0.3, a @ a.T + 0.05 * np.eye(DIM))


class StyledGaussian:
    """The exact Gaussian denoiser, its mean shifted by a per-row conditioning vector."""

    def __init__(self):
        self.data = gaussian()

    def __call__(self, x, sigma, cond):
        shift = cond["shift"].reshape(x.shape)
        return self.data.denoise(x - shift, sigma) + shift


def run_job(denoise, sampler, steps, seeds, shift, callback=None):
    sigmas = karras_sigmas(steps, 0.02, 20.0)
    noise = SeededNoise(tuple(seeds), SHAPE)
    x = initial_noise(seeds, SHAPE) * sigmas[0]
    cond = {"shift": np.full((len(seeds), DIM), shift)}
    return SAMPLERS[sampler](lambda x, s: denoise(x, s, cond), x, sigmas, noise=noise, callback=callback)


JOBS = [("euler", 6, [1, 2], 0.1), ("dpmpp_2m", 9, [3], -0.2), ("heun", 4, [4, 5, 6], 0.0),
        ("euler_ancestral", 7, [7], 0.3), ("ddim", 5, [8, 9], 0.05), ("unipc", 8, [10], -0.1)]


def test_concurrent_jobs_share_calls_and_match_their_solo_images():
    model = StyledGaussian()
    alone = [run_job(model, *job) for job in JOBS]
    results: dict[int, np.ndarray] = {}
    # Every job opens its session before any samples, and the owner may wait as long as it takes for
    # every active job's request: what shares a call is then fixed by the rule, not by the scheduler.
    # (A job that found itself the only one active would run inline, alone, and a busy machine could
    # run the six jobs one after another.)
    with BatchingDenoiser(model, max_batch=8, wait_ms=60_000, name="test") as denoiser:
        barrier = threading.Barrier(len(JOBS))

        def worker(i):
            with denoiser.session():
                barrier.wait(timeout=20)
                results[i] = run_job(denoiser, *JOBS[i])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(JOBS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        stats = denoiser.stats
    for i, expected in enumerate(alone):
        np.testing.assert_allclose(results[i], expected, rtol=0, atol=1e-9)
    assert stats.max_requests_per_call > 1
    assert max(stats.batch_sizes) > 3 and max(stats.batch_sizes) <= 8
    assert stats.calls < sum(len(seeds) * (2 * steps if s == "heun" else steps) for s, steps, seeds, _ in JOBS)


def test_requests_wider_than_max_batch_are_split():
    model = StyledGaussian()
    x = np.random.default_rng(1).standard_normal((11, *SHAPE))
    cond = {"shift": np.zeros((11, DIM))}
    sigma = np.linspace(0.1, 5, 11)
    with BatchingDenoiser(model, max_batch=4, wait_ms=0) as denoiser:
        out = denoiser(x, sigma, cond)
        assert set(denoiser.stats.batch_sizes) <= {1, 2, 3, 4}
    np.testing.assert_allclose(out, model(x, sigma, cond), atol=1e-12)


def test_an_error_reaches_only_the_callers_of_that_call():
    def model(x, sigma, cond):
        if np.any(cond["poison"]):
            raise RuntimeError("bad rows")
        return x * 0.5

    with BatchingDenoiser(model, max_batch=1, wait_ms=0) as denoiser:
        good = denoiser(np.ones((1, 2)), np.ones(1), {"poison": np.zeros((1, 1))})
        with pytest.raises(RuntimeError, match="bad rows"):
            denoiser(np.ones((1, 2)), np.ones(1), {"poison": np.ones((1, 1))})
        again = denoiser(np.ones((1, 2)), np.ones(1), {"poison": np.zeros((1, 1))})
    assert good.tolist() == again.tolist() == [[0.5, 0.5]]


def test_non_finite_rows_fail_only_their_job():
    def model(x, sigma, cond):
        return np.where(cond["nan"] > 0, np.nan, x)

    with BatchingDenoiser(model, max_batch=8, wait_ms=50) as denoiser:
        outcome = {}
        barrier = threading.Barrier(2)

        def call(name, flag):
            barrier.wait(timeout=20)
            try:
                outcome[name] = denoiser(np.ones((1, 3)), np.ones(1), {"nan": np.full((1, 3), flag)})
            except NonFiniteOutput as err:
                outcome[name] = err

        threads = [threading.Thread(target=call, args=("ok", 0.0)), threading.Thread(target=call, args=("bad", 1.0))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in threads)
        assert denoiser.stats.batch_sizes == {2: 1}
    assert isinstance(outcome["bad"], NonFiniteOutput)
    assert outcome["ok"].tolist() == [[1.0, 1.0, 1.0]]


def test_a_job_leaving_mid_way_does_not_disturb_the_others():
    model = StyledGaussian()
    expected = run_job(model, "dpmpp_2m", 10, [11], 0.2)
    results = {}

    class Stop(Exception):
        pass

    def leave_at_step_3(step):
        if step.i == 3:
            raise Stop

    with BatchingDenoiser(model, max_batch=8, wait_ms=20) as denoiser:
        def stays():
            with denoiser.session():
                results["stays"] = run_job(denoiser, "dpmpp_2m", 10, [11], 0.2)

        def leaves():
            with denoiser.session():
                try:
                    run_job(denoiser, "euler", 10, [12, 13], 0.0, callback=leave_at_step_3)
                except Stop:
                    results["left"] = True

        threads = [threading.Thread(target=stays), threading.Thread(target=leaves)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert results["left"]
    np.testing.assert_allclose(results["stays"], expected, atol=1e-9)


def test_a_lone_job_does_not_wait_for_company():
    calls = []

    def model(x, sigma, cond):
        calls.append(x.shape[0])
        return x

    with BatchingDenoiser(model, max_batch=8, wait_ms=500) as denoiser:
        with denoiser.session():
            started = time.perf_counter()
            for _ in range(5):
                denoiser(np.ones((1, 2)), np.ones(1))
            elapsed = time.perf_counter() - started
    assert elapsed < 0.5 and calls == [1] * 5
