"""Why batching pays or not on this machine: the model call's cost per row, standalone.

    python -m bench.batch_cost                        # the base model and the shipped upscaler
    python -m bench.batch_cost --quick                # tiny models, seconds (what tests/bench runs)

Step-level batching (services/worker/batching.py) can only save what one model call of B rows
saves over B/k calls of k rows. This bench measures that ceiling directly, with no jobs, Redis
or sampler around it, for each model the worker runs (the base UNet, the upscaler's diffusion
network at the 128² output size), in one process, the configurations taking turns:

  per_row     ms per row of one call at each batch size, ONNX Runtime with 1 and with 2 intra-op
              threads (the worker's default is one per core);
  concurrent  rows/s when N threads each call the model with one job's rows at once (what the
              worker does with batching off: Celery's threads call ORT side by side) against
              one call of all N jobs' rows (what batching makes of them);
  tick        what the batching denoiser itself adds per call: a job alone through it against
              the same calls made directly, on the real model and on a model that does nothing.

Figures are medians of interleaved rounds; the closing JSON line (bench.report) holds them all.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.report import finish
from services.worker.batching_choice import PROBE_LR_SIDE, probe, rows_call, rows_per_s

Call = Callable[[int], None]   # runs the model once on this many rows


def _log(message: str) -> None:
    print(message, flush=True)


def median_ms(fn: Callable[[], None], reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000.0


def per_row_ms(call_ms: float, rows: int) -> float:
    return call_ms / rows


def batch_gain(per_row: dict[int, float], small: int, large: int) -> float:
    """How much less a row costs in a call of `large` rows than in one of `small` rows: the most
    step-level batching can save when jobs of `small` rows each share calls of `large`."""
    return per_row[small] / per_row[large]


# --- the measurements


def measure_per_row(calls: dict[str, Call], batches: list[int], rounds: int, reps: int) -> dict:
    """{config: {rows: ms per row}}, configs taking turns each round, medians over rounds."""
    raw: dict[str, dict[int, list[float]]] = {c: {b: [] for b in batches} for c in calls}
    for r in range(rounds):
        for b in batches:
            order = list(calls)[r % len(calls):] + list(calls)[: r % len(calls)]
            for name in order:
                raw[name][b].append(per_row_ms(median_ms(lambda c=calls[name], b=b: c(b), reps), b))
    return {name: {b: statistics.median(v) for b, v in rows.items()} for name, rows in raw.items()}


def measure_concurrent(call: Call, job_rows: int, jobs: list[int], rounds: int, calls_each: int) -> dict:
    """{jobs: side-by-side and one-call rows/s and their ratio}: the worker's own auto probe
    (services/worker/batching_choice.py), with more rounds."""
    out = {}
    for n in jobs:
        p = probe(call, job_rows, n, rounds, calls_each)
        out[n] = {"side_by_side_rows_per_s": p.side_by_side_rows_per_s, "one_call_rows_per_s": p.one_call_rows_per_s,
                  "gain": p.gain}
    return out


def cores_used(call: Call, callers: int, rows: int, calls_each: int, rounds: int) -> float:
    """CPU seconds of this process per wall second while `callers` threads each make `calls_each`
    calls of `rows` rows: how many cores the model's calls kept busy (median over rounds)."""
    out = []
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        rows_per_s(call, callers, rows, calls_each)
        out.append((time.process_time() - cpu) / (time.perf_counter() - wall))
    return statistics.median(out)


def measure_stack(x: np.ndarray, cond: dict, jobs: int, reps: int) -> float:
    """ms the batching denoiser spends stacking `jobs` requests like (x, cond) into one call's
    inputs (services/worker/batching.py stacks x, sigma and every cond array)."""
    from services.worker.batching import _stack

    pieces = [(x.copy(), np.ones(x.shape[0]), {k: v.copy() for k, v in cond.items()}) for _ in range(jobs)]

    def stack() -> None:
        _stack([p[0] for p in pieces])
        _stack([p[1] for p in pieces])
        {k: _stack([p[2][k] for p in pieces]) for k in cond}

    return median_ms(stack, reps)


def measure_tick(model: Callable, x: np.ndarray, cond, rounds: int, reps: int) -> dict:
    """One job's call alone, directly and through a BatchingDenoiser (in a session, as a job runs)."""
    from services.worker.batching import BatchingDenoiser

    sigma = np.full(x.shape[0], 1.0)
    direct, batched = [], []
    with BatchingDenoiser(model, max_batch=16, wait_ms=6.0, name="bench-tick") as den, den.session():
        for _ in range(rounds):
            direct.append(median_ms(lambda: model(x, sigma, cond), reps))
            batched.append(median_ms(lambda: den(x, sigma, cond), reps))
    d, b = statistics.median(direct), statistics.median(batched)
    return {"direct_ms": d, "batching_ms": b, "overhead_ms": b - d}


def typical_inputs(runtime, job_rows: int) -> tuple[np.ndarray, dict]:
    """One job's x and cond for a step, as the worker sends them."""
    from services.worker.runtime import AUG_LEVEL, LOW_RES, UpscalerInfo

    info = runtime.info
    if isinstance(info, UpscalerInfo):
        side = PROBE_LR_SIDE * info.factor
        x = np.zeros((job_rows, 4, side, side), np.float32)
        return x, {LOW_RES: x.copy(), AUG_LEVEL: np.zeros(job_rows, np.float32)}
    x = np.zeros((job_rows, *info.latent_shape(info.width, info.height)), np.float32)
    return x, dict(runtime.encode_text(["a red apple"] * job_rows, [""] * job_rows))


# --- main


def load(settings_kw: dict, repository: Path, model: str, threads: int):
    from services.common.settings import Settings
    from services.worker.onnx_runtime import load_runtime

    settings = Settings.from_env(model_repository=repository, onnx_intra_op_threads=threads, **settings_kw)
    return load_runtime(settings, model)


def tiny_repositories(root: Path) -> tuple[Path, str, str]:
    from bench.tiny_models import tiny_repository, tiny_upscaler_repository

    models = tiny_repository(root / "base")
    up = tiny_upscaler_repository(root / "up")
    (models / "tiny-upscale").symlink_to((up / "tiny-upscale").resolve())
    return models, "tiny", "tiny-upscale"


def run(opts: argparse.Namespace, repository: Path, base: str, upscaler: str) -> dict:
    figures: dict = {"threads": opts.threads, "models": {}}
    for role, name in (("base", base), ("upscaler", upscaler)):
        if not name:
            continue
        runtimes = {t: load({}, repository, name, t) for t in opts.threads}
        first = runtimes[opts.threads[0]]
        calls = {f"{t} threads": rows_call(rt)[0] for t, rt in runtimes.items()}
        job_rows = rows_call(first)[1]
        if role == "base":
            batches, label = opts.base_batches, f"{name}/{first.info.version} UNet"
        else:
            side = PROBE_LR_SIDE * first.info.factor
            batches, label = opts.sr_batches, f"{name}/{first.info.version} diffusion net, {side}² rows"
        for c in calls.values():   # untimed: first-call allocations at each size
            for b in batches:
                c(b)
        _log(f"{label}: ms per row at batch {batches} ({opts.rounds} rounds)")
        per_row = measure_per_row(calls, batches, opts.rounds, opts.reps)
        for cfg, rows in per_row.items():
            _log(f"  {cfg}: " + ", ".join(f"b{b} {v:.2f}" for b, v in rows.items())
                 + f"; gain b{job_rows}->b{batches[-1]} {batch_gain(rows, job_rows, batches[-1]):.2f}x")
        default_threads = opts.threads[-1]
        conc = measure_concurrent(calls[f"{default_threads} threads"], job_rows, opts.jobs, opts.rounds,
                                  opts.calls_each)
        for n, v in conc.items():
            _log(f"  {n} jobs of {job_rows} rows ({default_threads} threads): side by side "
                 f"{v['side_by_side_rows_per_s']:.0f} rows/s, one call {v['one_call_rows_per_s']:.0f} rows/s, "
                 f"gain {v['gain']:.2f}x")
        used = {f"{n} jobs side by side": cores_used(calls[f"{default_threads} threads"], n, job_rows,
                                                     opts.calls_each, opts.rounds) for n in opts.jobs}
        used.update({f"one call of {n * job_rows} rows": cores_used(calls[f"{default_threads} threads"], 1,
                                                                    n * job_rows, opts.calls_each, opts.rounds)
                     for n in opts.jobs})
        _log(f"  cores kept busy ({default_threads} threads): "
             + ", ".join(f"{k} {v:.2f}" for k, v in used.items()))
        probe_x, probe_cond = typical_inputs(first, job_rows)
        stack_ms = {str(n): measure_stack(probe_x, probe_cond, n, opts.reps * 4) for n in opts.jobs}
        _log("  stacking the requests into one call: " + ", ".join(f"{n} jobs {v:.3f} ms" for n, v in stack_ms.items()))
        figures["models"][role] = {
            "cores_used": used, "stack_ms": stack_ms,
            "model": f"{name}/{first.info.version}", "job_rows": job_rows,
            "ms_per_row": {cfg: {str(b): v for b, v in rows.items()} for cfg, rows in per_row.items()},
            "gain_per_row": {cfg: batch_gain(rows, job_rows, batches[-1]) for cfg, rows in per_row.items()},
            "concurrent": {str(n): v for n, v in conc.items()},
        }
        if role == "base":
            rt = runtimes[default_threads]
            cond = rt.encode_text(["red apple", "red apple"], ["", ""])
            x = np.zeros((2, *rt.info.latent_shape(rt.info.width, rt.info.height)), np.float32)
            tick = {"model": measure_tick(rt.denoiser(False), x, cond, opts.rounds, opts.reps * 4),
                    "no-op": measure_tick(lambda x, s, c: x, x, cond, opts.rounds, opts.reps * 4)}
            for k, v in tick.items():
                _log(f"  tick, one job of 2 rows alone, {k}: direct {v['direct_ms']:.3f} ms, "
                     f"through the batching denoiser {v['batching_ms']:.3f} ms (+{v['overhead_ms']:.3f} ms)")
            figures["tick"] = tick
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models, few repetitions: a smoke run for tests")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--model", default="atelier-emoji")
    p.add_argument("--upscaler", default="atelier-upscale", help="'' to leave it out")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--base-batches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--sr-batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--jobs", type=int, nargs="+", default=[4, 8])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--calls-each", type=int, default=6)
    p.add_argument("--plot", type=Path, default=None, help="accepted for the bench convention; no plot")
    opts = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    if opts.quick:
        opts.base_batches, opts.sr_batches, opts.jobs = [1, 2, 4], [1, 2], [2]
        opts.rounds, opts.reps, opts.calls_each = 1, 2, 2
        with tempfile.TemporaryDirectory(prefix="atelier-bench-batch-cost-") as tmp:
            figures = run(opts, *tiny_repositories(Path(tmp)))
    else:
        figures = run(opts, opts.repository, opts.model, opts.upscaler)
    figures["wall_s"] = time.perf_counter() - started
    finish("batch_cost", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
