"""What the batching denoiser (services/worker/batching.py) promises each caller, with real
threads: only requests of one shape share a call, requests that wait keep their order, each
caller gets exactly its rows (or the error of its call), and every call is counted."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.worker.batching import BatchingDenoiser, DenoiserClosed, NonFiniteOutput, sampling

ROOT = Path(__file__).resolve().parents[2]


class HeldModel:
    """Doubles x; logs each call's first-column values and cond shapes; its first call waits
    for `release`, so the requests made meanwhile are all pending when the owner next takes."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls: list[tuple[list[float], dict | None, np.dtype]] = []

    def __call__(self, x, sigma, cond):
        if not self.calls:
            self.entered.set()
            self.release.wait(10)
        shapes = None if cond is None else {k: (v.shape, v.dtype.str) for k, v in cond.items()}
        self.calls.append((x[:, 0].tolist(), shapes, sigma.dtype))
        return x * 2


def pending(denoiser: BatchingDenoiser) -> int:
    with denoiser._lock:
        return len(denoiser._pending)


def queue_up(denoiser: BatchingDenoiser, requests: list[tuple]) -> list:
    """Each request from its own thread, in this order, behind a held first call; the answers."""
    answers: list = [None] * len(requests)

    def call(i, x, cond):
        try:
            answers[i] = denoiser(x, np.ones(len(x)), cond)
        except Exception as err:  # noqa: BLE001 - the answer this caller got
            answers[i] = err

    held = threading.Thread(target=denoiser, args=(np.full((1, 2), -1.0), np.ones(1), None))
    held.start()
    assert denoiser.model.entered.wait(10)
    threads = [held]
    for i, (x, cond) in enumerate(requests):
        threads.append(threading.Thread(target=call, args=(i, x, cond)))
        threads[-1].start()
        end = time.monotonic() + 10
        while pending(denoiser) < i + 1 and time.monotonic() < end:
            time.sleep(0.002)
    denoiser.model.release.set()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    return answers


def rows(value: float, n: int = 1, width: int = 2) -> np.ndarray:
    return np.full((n, width), value)


def test_only_requests_of_one_shape_and_dtype_share_a_call():
    model = HeldModel()
    c3 = {"c": np.zeros((1, 3))}
    requests = [
        (rows(1), c3),
        (rows(2), {"c": np.zeros((1, 5))}),  # another cond row shape
        (rows(3), {"c": np.zeros((1, 3), np.float32)}),  # another cond dtype
        (rows(4), {"d": np.zeros((1, 3))}),  # another cond key
        (rows(5), None),  # no cond
        (rows(6, width=3), c3),  # another x row shape
        (rows(7).astype(np.float32), c3),  # another x dtype
        (rows(8), c3),  # the first one's twin
    ]
    with BatchingDenoiser(model, max_batch=16, wait_ms=0, name="shapes") as denoiser:
        answers = queue_up(denoiser, requests)
    assert [call[0] for call in model.calls] == [[-1.0], [1.0, 8.0], [2.0], [3.0], [4.0], [5.0], [6.0], [7.0]]
    assert model.calls[1][1] == {"c": ((2, 3), "<f8")} and model.calls[3][1] == {"c": ((1, 3), "<f4")}
    for (x, _), answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, x * 2)
        assert answer.dtype == x.dtype


def test_requests_passed_over_keep_their_order_for_the_next_call():
    model = HeldModel()
    other = {"c": np.zeros((1, 5))}
    same = {"c": np.zeros((1, 3))}
    requests = [(rows(1), same), (rows(2), other), (rows(3), same), (rows(4), other), (rows(5), other)]
    with BatchingDenoiser(model, max_batch=16, wait_ms=0) as denoiser:
        queue_up(denoiser, requests)
    assert [call[0] for call in model.calls] == [[-1.0], [1.0, 3.0], [2.0, 4.0, 5.0]]


def test_a_call_takes_at_most_max_batch_rows_and_the_rest_wait_their_turn():
    model = HeldModel()
    requests = [(rows(1, n=2), None), (rows(2, n=2), None), (rows(3, n=1), None), (rows(4, n=3), None)]
    with BatchingDenoiser(model, max_batch=4, wait_ms=0) as denoiser:
        answers = queue_up(denoiser, requests)
        stats = denoiser.stats
    assert (stats.calls, stats.rows, stats.max_requests_per_call) == (3, 9, 2)
    assert (dict(stats.batch_sizes), dict(stats.requests_per_call)) == ({1: 1, 4: 2}, {1: 1, 2: 2})
    assert [call[0] for call in model.calls] == [[-1.0], [1.0, 1.0, 2.0, 2.0], [3.0, 4.0, 4.0, 4.0]]
    for (x, _), answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer, x * 2)


def test_sigma_reaches_the_model_one_float64_per_row():
    seen = []

    def model(x, sigma, cond):
        seen.append(sigma.copy())
        return x

    with BatchingDenoiser(model, max_batch=8, wait_ms=0) as denoiser:
        denoiser(np.zeros((3, 2), np.float32), 2)
        denoiser(np.zeros((2, 2)), np.array([0.5, 1.5], np.float32))
    assert [s.tolist() for s in seen] == [[2.0, 2.0, 2.0], [0.5, 1.5]]
    assert [s.dtype for s in seen] == [np.float64, np.float64]


def test_no_rows_ask_the_model_nothing():
    def model(x, sigma, cond):
        raise AssertionError("called")

    x = np.zeros((0, 2))
    with BatchingDenoiser(model, wait_ms=0) as denoiser:
        out = denoiser(x, np.ones(0))
        assert denoiser.stats.calls == 0
    assert out.shape == (0, 2) and out is not x


def test_a_closed_denoiser_refuses_new_requests_naming_its_model():
    denoiser = BatchingDenoiser(lambda x, s, c: x, wait_ms=0, name="unet")
    denoiser.close()
    with pytest.raises(DenoiserClosed, match="^unet$"):
        denoiser(np.zeros((1, 2)), np.ones(1))


def test_a_model_returning_the_wrong_rows_or_non_finite_values_fails_its_callers():
    with BatchingDenoiser(lambda x, s, c: x[:1], wait_ms=0, name="short") as denoiser:
        with pytest.raises(ValueError, match="^short returned 1 rows for 2$"):
            denoiser(np.zeros((2, 2)), np.ones(2))
    with BatchingDenoiser(lambda x, s, c: np.full_like(x, np.nan), wait_ms=0, name="nan") as denoiser:
        with pytest.raises(NonFiniteOutput, match="^nan returned non-finite values$"):
            denoiser(np.zeros((1, 2)), np.ones(1))


def test_each_call_is_observed_under_its_model():
    def observed(name):
        return (REGISTRY.get_sample_value("atelier_denoiser_batch_rows_count", {"model": name}) or 0.0,
                REGISTRY.get_sample_value("atelier_denoiser_batch_rows_sum", {"model": name}) or 0.0,
                REGISTRY.get_sample_value("atelier_denoiser_call_seconds_count", {"model": name}) or 0.0)

    before = observed("observed")
    with BatchingDenoiser(lambda x, s, c: x, max_batch=4, wait_ms=0, name="observed") as denoiser:
        denoiser(np.zeros((6, 2)), np.ones(6))
    count, total, timed = (b - a for a, b in zip(before, observed("observed"), strict=True))
    assert (count, total, timed) == (2.0, 6.0, 2.0)


def test_sampling_opens_a_session_only_on_a_batching_denoiser():
    def plain(x, sigma, cond):
        return x

    with BatchingDenoiser(plain, wait_ms=0) as denoiser:
        with sampling(plain):
            assert denoiser._sessions == 0
        with sampling(denoiser), sampling(denoiser):
            assert denoiser._sessions == 2
        assert denoiser._sessions == 0


def test_a_lone_job_calls_the_model_in_its_own_thread_up_to_max_batch_rows_and_wider_calls_in_pieces():
    called: list[tuple[threading.Thread, int]] = []

    def model(x, sigma, cond):
        called.append((threading.current_thread(), x.shape[0]))
        return x

    with BatchingDenoiser(model, max_batch=3, wait_ms=0) as denoiser, denoiser.session():
        denoiser(np.zeros((3, 2)), np.ones(3))
        denoiser(np.zeros((4, 2)), np.ones(4))
    me = threading.current_thread()
    assert called[0] == (me, 3)  # no hand-off to the owner thread and back
    assert [rows for _, rows in called[1:]] == [3, 1] and all(thread is not me for thread, _ in called[1:])


def test_a_wrong_row_count_names_the_rows_asked_for_and_a_call_s_time_is_within_its_caller_s_wait():
    with BatchingDenoiser(lambda x, s, c: x[:1], wait_ms=0, name="short") as denoiser:
        with pytest.raises(ValueError) as refused:
            denoiser(np.zeros((2, 5)), np.ones(2))
    assert str(refused.value) == "short returned 1 rows for 2"

    def seconds():
        return REGISTRY.get_sample_value("atelier_denoiser_call_seconds_sum", {"model": "timed"}) or 0.0

    before = seconds()
    with BatchingDenoiser(lambda x, s, c: x, wait_ms=0, name="timed") as denoiser:
        started = time.perf_counter()
        denoiser(np.zeros((2, 5)), np.ones(2))
        waited = time.perf_counter() - started
    assert 0 <= seconds() - before <= waited


def test_a_lone_job_s_non_finite_values_fail_it_naming_the_model():
    with BatchingDenoiser(lambda x, s, c: np.full_like(x, np.inf), wait_ms=0, name="inf") as denoiser:
        with denoiser.session(), pytest.raises(NonFiniteOutput) as refused:
            denoiser(np.zeros((1, 2)), np.ones(1))
    assert str(refused.value) == "inf returned non-finite values"


def test_a_closed_denoiser_refuses_a_request_wider_than_one_call_naming_its_model():
    denoiser = BatchingDenoiser(lambda x, s, c: x, max_batch=2, wait_ms=0, name="unet")
    denoiser.close()
    with pytest.raises(DenoiserClosed) as refused:
        denoiser(np.zeros((3, 2)), np.ones(3))
    assert str(refused.value) == "unet"


def test_a_denoiser_of_no_rows_a_call_is_refused_saying_so():
    with pytest.raises(ValueError) as refused:
        BatchingDenoiser(lambda x, s, c: x, max_batch=0)
    assert str(refused.value) == "max_batch must be at least 1"


def test_a_denoiser_left_open_never_keeps_a_worker_process_alive():
    BatchingDenoiser(lambda x, s, c: x, wait_ms=0).close()  # in this process too, tied to the code it runs
    script = ("from services.worker.batching import BatchingDenoiser\n"
              "BatchingDenoiser(lambda x, s, c: x, wait_ms=0)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=30, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


def test_a_full_call_is_made_at_once_never_waiting_out_the_batching_window():
    answers = []
    with BatchingDenoiser(lambda x, s, c: x, max_batch=2, wait_ms=3_600_000) as denoiser:  # an hour's window
        caller = threading.Thread(target=lambda: answers.append(denoiser(np.zeros((2, 2)), np.ones(2))))
        caller.start()
        caller.join(timeout=30)
        assert not caller.is_alive() and answers[0].shape == (2, 2)
