"""Whether a model's denoiser calls go through the batching denoiser on this machine.

Step-level batching (services/worker/batching.py) turns N jobs' calls into one call of all
their rows, run by one owner thread. That pays where one large call is cheaper than the jobs'
own calls side by side (an accelerator that a batch of 2 leaves idle), and not where the jobs'
own calls already keep the hardware busy: on the 2-core CPU measured in docs/BENCHMARKS.md
("Batching: why the gain went", bench/batch_cost.py) the base UNet's row costs 1.5x less in a
call of 16 rows, but one ORT call at a time runs on about one core, while eight jobs calling
side by side use both, and the upscaler's 128² rows cost the same at any batch size.

So each model gets a mode (``ATELIER_BATCHING``, services/common/settings.py): ``on``, ``off``,
or ``auto``, which measures the very choice once, when the model loads: rows/s of ``jobs``
threads each calling the model with one job's rows at once, against one call of all those
rows. Batching goes on only where the one call is at least as fast (GAIN_TO_BATCH); otherwise
the model's jobs call its runtime directly, with no owner thread, no wait and no copy: off
costs nothing.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diffusion.guidance import GUIDANCE_INPUT
from services.common.settings import BATCHING_AUTO, BATCHING_OFF, BATCHING_ON, batching_mode
from services.worker.runtime import AUG_LEVEL, LOW_RES, UpscalerInfo

log = logging.getLogger(__name__)

# Auto batches where one call of every job's rows is at least as fast as the same rows called
# side by side. The costs of a wrong choice are uneven: where the two tie (the base model on a
# quiet 2-core CPU, 1.04x) batching costs a job nothing (single-job latency 1.00-1.03x of
# unbatched), while leaving it off where it wins loses 1.2-1.5x (the same model on the same
# CPU with busy neighbours); docs/BENCHMARKS.md, "Batching: why the gain went".
GAIN_TO_BATCH = 1.0
# The upscaler is probed on what the cascade gives it most: a 32² base image, 128² output rows.
# Larger inputs run in tiles whose rows are larger still, where batching gains less.
PROBE_LR_SIDE = 32
PROBE_ROUNDS = 3
PROBE_CALLS = 3
# The probe delays the job that loaded the model, and a runtime whose calls hang (a hung kernel)
# would hang it for good, before any job time limit or watchdog is armed: past this many seconds
# (or the worker's soft job time limit, if shorter) the measurement is abandoned and batching stays on.
PROBE_TIMEOUT_S = 20.0

RowsCall = Callable[[int], object]  # runs the model once on this many rows


@dataclass(frozen=True)
class Probe:
    """One auto measurement: `jobs` callers of `job_rows` rows each, side by side vs one call."""

    jobs: int
    job_rows: int
    side_by_side_rows_per_s: float
    one_call_rows_per_s: float

    @property
    def gain(self) -> float:
        return self.one_call_rows_per_s / self.side_by_side_rows_per_s


@dataclass(frozen=True)
class BatchingChoice:
    mode: str  # the configured mode for the model: on, off or auto
    batching: bool
    probe: Probe | None = None
    reason: str = ""


def rows_per_s(call: RowsCall, callers: int, rows: int, calls: int) -> float:
    barrier = threading.Barrier(callers + 1)

    def run() -> None:
        barrier.wait()
        for _ in range(calls):
            call(rows)

    threads = [threading.Thread(target=run, daemon=True, name="batching-probe") for _ in range(callers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return callers * calls * rows / max(time.perf_counter() - start, 1e-9)


def probe(call: RowsCall, job_rows: int, jobs: int, rounds: int = PROBE_ROUNDS, calls: int = PROBE_CALLS) -> Probe:
    """Measure what batching `jobs` jobs of `job_rows` rows would gain, the two ways taking turns
    (medians over rounds), after one untimed call of each size."""
    if jobs < 2 or job_rows < 1 or rounds < 1 or calls < 1:
        raise ValueError(f"a batching probe needs jobs >= 2 and positive rows, rounds and calls; got jobs={jobs}, "
                         f"job_rows={job_rows}, rounds={rounds}, calls={calls}")
    call(job_rows)
    call(jobs * job_rows)
    side, one = [], []
    for r in range(rounds):
        ways = [(side, lambda: rows_per_s(call, jobs, job_rows, calls)),
                (one, lambda: rows_per_s(call, 1, jobs * job_rows, calls))]
        for out, measure in ways if r % 2 == 0 else ways[::-1]:
            out.append(measure())
    return Probe(jobs, job_rows, statistics.median(side), statistics.median(one))


def rows_call(runtime) -> tuple[RowsCall, int]:
    """A call of the runtime's denoiser on n typical rows, and the rows one job sends per step:
    the base model's latents at its default size with prompt states (two rows a step under
    classifier-free guidance; one for a fast model, whose guidance scale is an input), or the
    upscaler's 128² rows with their upsampled input."""
    info = runtime.info
    den = runtime.denoiser(False)
    rng = np.random.default_rng(0)
    if isinstance(info, UpscalerInfo):
        side = PROBE_LR_SIDE * info.factor
        one_x = rng.standard_normal((1, 4, side, side)).astype(np.float32) * 0.1
        one_cond = {LOW_RES: np.clip(one_x * 5.0, -1.0, 1.0), AUG_LEVEL: np.full(1, info.aug_level, np.float32)}
        job_rows = 1
    else:
        one_x = rng.standard_normal((1, *info.latent_shape(info.width, info.height))).astype(np.float32)
        one_cond = dict(runtime.encode_text(["a red apple"], [""]))
        if getattr(info, "guidance_input", False):
            # A fast (distilled) model takes the guidance scale as an input: one row a step, no CFG pair.
            one_cond[GUIDANCE_INPUT] = np.full(1, info.default_guidance_scale, np.float32)
            job_rows = 1
        else:
            job_rows = 1 if info.default_guidance_scale == 1.0 else 2
    cache: dict[int, tuple] = {}

    def call(n: int) -> object:
        if n not in cache:
            cache[n] = (np.repeat(one_x, n, axis=0), np.full(n, 1.0),
                        {k: np.repeat(np.asarray(v), n, axis=0) for k, v in one_cond.items()})
        x, sigma, cond = cache[n]
        return den(x, sigma, cond)

    return call, job_rows


def _bounded(measure: Callable[[], Probe], timeout_s: float) -> Probe:
    """`measure()` in a thread of its own, given up on after `timeout_s` (the thread, stuck in the
    runtime, is a daemon and is left behind)."""
    out: list = []

    def run() -> None:
        try:
            out.append(measure())
        except Exception as err:  # noqa: BLE001 - handed to the caller
            out.append(err)

    thread = threading.Thread(target=run, daemon=True, name="batching-probe")
    thread.start()
    thread.join(timeout_s)
    if not out:
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]


def choose(mode: str, runtime, max_batch: int, measure: Callable[[], Probe] | None = None,
           timeout_s: float = PROBE_TIMEOUT_S) -> BatchingChoice:
    """The choice for one loaded model. `measure` (default: probe the runtime with as many jobs
    as fill one call of `max_batch` rows, at most 8) runs only in auto mode, for at most `timeout_s`."""
    if mode == BATCHING_ON:
        return BatchingChoice(mode, True, reason="set on")
    if mode == BATCHING_OFF:
        return BatchingChoice(mode, False, reason="set off")
    if mode != BATCHING_AUTO:
        raise ValueError(f"unknown batching mode {mode!r}")
    if measure is None:
        def measure() -> Probe:
            call, job_rows = rows_call(runtime)
            return probe(call, job_rows, max(2, min(8, max_batch // job_rows)))
    try:
        p = _bounded(measure, timeout_s)
    except Exception as err:  # noqa: BLE001 - a failed measurement keeps the behaviour of before: batching on
        log.warning("batching probe failed (%s): batching stays on", err)
        return BatchingChoice(mode, True, reason=f"probe failed: {err}")
    on = p.gain >= GAIN_TO_BATCH
    reason = (f"{p.jobs} jobs of {p.job_rows} rows: one call {p.one_call_rows_per_s:.0f} rows/s, side by side "
              f"{p.side_by_side_rows_per_s:.0f} rows/s, gain {p.gain:.2f}x {'>=' if on else '<'} {GAIN_TO_BATCH}")
    return BatchingChoice(mode, on, p, reason)


def choice_for(modes: str, runtime, max_batch: int, timeout_s: float = PROBE_TIMEOUT_S) -> BatchingChoice:
    """The choice for a loaded runtime under the ``ATELIER_BATCHING`` value `modes`."""
    return choose(batching_mode(modes, runtime.info.name), runtime, max_batch, timeout_s=timeout_s)
