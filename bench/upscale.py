"""Super-resolution's speed through the worker's job path (issue 13): `python -m bench.upscale`.

One in-process worker (bench/batching.py's: the worker's ONNX runtimes, JobExecutor, a JobStore
on a real Redis) runs, in one process and one run, so that the machine's load falls on all
sides alike:

(a) a 128² text-to-image job at the defaults (the base model's sampler, steps and guidance, then
    the cascade `upscale: 4` through the upscaler at its default steps) against today's 32² job
    (the same prompt and seed without the upscale), in pairs, alternating which runs first;
    the figure is the median of the pairs' ratios (goal: <= 2.5x). Both run with the worker's
    batching setting (ATELIER_BATCHING, default auto), as a worker would.
(b) UPSCALE jobs (a 32² image in, 128² out) from 1/4/8 threads at once: images/s with batching
    off and on, for the diffusion chain (default steps) and the fast CNN (`upscale_fast`); waves
    of the modes take turns; medians over waves.

Runs with numpy's BLAS on one thread, as `atelier worker` sets it (services/worker/cli.py; the
bench starts itself again with that environment when it is not set). Prints progress and ends
with one JSON line (bench.report), the machine's load average before and after included.
--quick: tiny random models, seconds (a smoke run).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._redis import bench_redis
from bench._worker_env import as_a_worker, blas_environment
from bench.batching import PROMPTS, Worker, _rotated
from bench.report import finish

PREFIX = "bench-upscale:"
GOAL_CASCADE_RATIO = 2.5


def _log(message: str) -> None:
    print(message, flush=True)


# --- pure helpers


def first_in_pair(i: int) -> str:
    """Which job of pair i runs first ("base" or "cascade"): ABBA order, so that neither side
    always follows the other (a run's tail of ORT threads and caches falls on both alike)."""
    return "base" if i % 4 in (0, 3) else "cascade"


def paired_ratios(base_s: list[float], cascade_s: list[float]) -> list[float]:
    """cascade / base time of each pair."""
    if len(base_s) != len(cascade_s) or not base_s:
        raise ValueError(f"need equal, non-empty pairs; got {len(base_s)} and {len(cascade_s)} times")
    return [c / b for b, c in zip(base_s, cascade_s, strict=True)]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); one value is all three."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def rates(waves: list[dict]) -> list[float]:
    """images/s of each wave (`images` made in `wall_s` seconds)."""
    return [w["images"] / w["wall_s"] for w in waves]


def speedups(on: dict[str, float], off: dict[str, float]) -> dict[str, float]:
    """on / off for every key both have."""
    return {k: on[k] / off[k] for k in on if k in off}


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --- jobs


def png_32(worker: Worker, seed: int) -> bytes:
    """A 32² image of the base model's (its default job's PNG), the input of the UPSCALE jobs."""
    from services.common.events import EventKind

    res = worker.wave(1, seed)
    job_id = res["ids"][0]
    for e in worker.store.read_events(job_id):
        if e.kind == EventKind.ARTIFACT:
            return e.blob
    raise RuntimeError(f"job {job_id} made no image")


def cascade_job(worker: Worker, upscaler_info, factor: int = 4):
    from services.common.jobs import JobSpec, PromptSpec
    from services.common.plan import resolve

    base = worker.loaded.runtime.info

    def make(seed: int):
        spec = JobSpec(prompts=(PromptSpec(PROMPTS[seed % len(PROMPTS)]),), seeds=(seed,), upscale=factor,
                       upscaler=upscaler_info.name, upscaler_version=upscaler_info.version)
        return spec.with_(plan=resolve(spec, base, upscaler_info))

    return make


def upscale_job(upscaler_info, image: bytes, fast: bool):
    from PIL import Image

    from services.common.jobs import JobSpec, PromptSpec
    from services.common.plan import resolve

    size = Image.open(io.BytesIO(image)).size

    def make(seed: int):
        spec = JobSpec(prompts=(PromptSpec(""),), seeds=(seed,), upscale_image=image, upscale_fast=fast,
                       upscaler=upscaler_info.name, upscaler_version=upscaler_info.version)
        return spec.with_(plan=resolve(spec, None, upscaler_info, size))

    return make


# --- the two measurements


def cascade_vs_base(worker: Worker, upscaler_info, pairs: int, seed0: int) -> dict:
    cascade = cascade_job(worker, upscaler_info)
    worker.wave(1, seed0)              # untimed: first calls of each network at these shapes
    worker.wave(1, seed0, cascade)
    times: dict[str, list[float]] = {"base": [], "cascade": []}
    for i in range(pairs):
        seed = seed0 + 1 + i
        order = ["base", "cascade"] if first_in_pair(i) == "base" else ["cascade", "base"]
        for side in order:
            res = worker.wave(1, seed, cascade if side == "cascade" else None)
            times[side].append(res["wall_s"])
        _log(f"[a] pair {i + 1}/{pairs}: base job {times['base'][-1] * 1000:.0f} ms, "
             f"cascade job {times['cascade'][-1] * 1000:.0f} ms")
    ratios = paired_ratios(times["base"], times["cascade"])
    q1, med, q3 = quartiles(ratios)
    return {"pairs": pairs, "base_ms_median": statistics.median(times["base"]) * 1000,
            "cascade_ms_median": statistics.median(times["cascade"]) * 1000,
            "sr_ms_median_of_differences": statistics.median(c - b for b, c in zip(times["base"], times["cascade"],
                                                                                     strict=True)) * 1000,
            "ratio_paired_median": med, "ratio_q1": q1, "ratio_q3": q3,
            "ratio_of_medians": statistics.median(times["cascade"]) / statistics.median(times["base"]),
            "goal": GOAL_CASCADE_RATIO, "goal_met": med <= GOAL_CASCADE_RATIO}


def upscale_throughput(workers: dict[str, Worker], upscaler_info, image: bytes, concurrency: list[int],
                       waves: int, seed0: int) -> dict:
    """{variant: {mode: {jobs: images/s}}} plus rows per call and speed-ups (on over off)."""
    seed = seed0
    out: dict = {}
    for variant, fast in (("diffusion", False), ("fast", True)):
        make = upscale_job(upscaler_info, image, fast)
        for w in workers.values():   # untimed: first calls at the largest batch
            w.wave(max(concurrency), seed, make)
            seed += max(concurrency)
        raw = {m: {str(c): [] for c in concurrency} for m in workers}
        rows = {m: {str(c): [0, 0] for c in concurrency} for m in workers}
        for k in range(waves):
            for i, c in enumerate(concurrency):
                for mode in _rotated(list(workers), k + i):
                    res = workers[mode].wave(c, seed, make)
                    seed += c
                    raw[mode][str(c)].append(res)
                    rows[mode][str(c)][0] += res["calls"]
                    rows[mode][str(c)][1] += res["rows"]
                    _log(f"[b] {variant} wave {k + 1}: {c} UPSCALE jobs, batching {mode}: {res['wall_s']:.2f} s, "
                         f"{c / res['wall_s']:.1f} images/s")
        ips = {m: {c: statistics.median(rates(ws)) for c, ws in by_c.items()} for m, by_c in raw.items()}
        out[variant] = {"images_per_s": ips,
                        "rows_per_call": {m: {c: (r / n if n else None) for c, (n, r) in by_c.items()}
                                          for m, by_c in rows.items()}}
        if "on" in ips and "off" in ips:
            out[variant]["speedup_on_over_off"] = speedups(ips["on"], ips["off"])
    return out


# --- main


def prepare(root: Path, opts: argparse.Namespace) -> tuple[Path, str, str]:
    """(repository, base model, upscaler) to run."""
    if not opts.quick:
        return opts.repository, opts.model, opts.upscaler
    from bench.tiny_models import tiny_repository, tiny_upscaler_repository

    models = tiny_repository(root / "base")
    up = tiny_upscaler_repository(root / "up")
    (models / "tiny-upscale").symlink_to((up / "tiny-upscale").resolve())
    return models, "tiny", "tiny-upscale"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny random models, few runs: a smoke run")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--model", default="atelier-emoji")
    p.add_argument("--upscaler", default="atelier-upscale")
    p.add_argument("--pairs", type=int, default=12, help="(a): 32² / 128² job pairs")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8], help="(b): UPSCALE jobs at once")
    p.add_argument("--waves", type=int, default=3, help="(b): waves per mode and concurrency")
    p.add_argument("--batching", default=None, help="(a)'s ATELIER_BATCHING mode (default: the worker's setting)")
    p.add_argument("--plot", type=Path, default=None, help="accepted for the bench convention; no plot")
    opts = p.parse_args(argv)
    as_a_worker("bench.upscale", argv)
    if opts.quick:
        opts.pairs, opts.concurrency, opts.waves = 2, [1, 2], 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from services.common.settings import Settings, batching_mode
    from services.common.store import JobStore
    from services.worker.onnx_runtime import load_runtime

    started, load_before = time.perf_counter(), loadavg()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-upscale-") as tmp:
        repo, model, upscaler = prepare(Path(tmp), opts)
        with bench_redis(PREFIX) as url:
            import redis

            settings = Settings.from_env(redis_url=url, key_prefix=PREFIX, model_repository=repo, default_model=model,
                                         default_upscaler=upscaler)
            base_rt, up_rt = load_runtime(settings, model), load_runtime(settings, upscaler)
            up = up_rt.info
            default_mode = opts.batching or batching_mode(settings.batching, model)
            _log(f"base {base_rt.info.name}/{base_rt.info.version}: {base_rt.info.width}² "
                 f"{base_rt.info.default_sampler} {base_rt.info.default_steps} steps, guidance "
                 f"{base_rt.info.default_guidance_scale}; upscaler {up.name}/{up.version}: x{up.factor}, "
                 f"{up.default_steps} steps, fast net: {up.fast}; ORT {base_rt.execution_provider}, "
                 f"{settings.onnx_intra_op_threads or 'one per core'} intra-op threads; load {load_before}")
            client = redis.Redis.from_url(url)
            store = JobStore(client, PREFIX, result_ttl_seconds=600)
            default = Worker(store, base_rt, settings, default_mode, name="default", upscaler=up_rt)
            workers = {m: Worker(store, None, settings, m, name=m, upscaler=up_rt) for m in ("off", "on")}
            choices = {"default": default.choices(), **{m: w.choices() for m, w in workers.items()}}
            for name, c in choices["default"].items():
                _log(f"(a) batching {default_mode} for {name}: {'on' if c['batching'] else 'off'} ({c['reason']})")
            try:
                cascade = cascade_vs_base(default, up, opts.pairs, 100)
                _log(f"(a) cascade / base job: paired median {cascade['ratio_paired_median']:.2f}x (quartiles "
                     f"{cascade['ratio_q1']:.2f}-{cascade['ratio_q3']:.2f}); medians {cascade['base_ms_median']:.0f} "
                     f"and {cascade['cascade_ms_median']:.0f} ms; goal <= {GOAL_CASCADE_RATIO}: "
                     f"{'met' if cascade['goal_met'] else 'not met'}")
                image = png_32(default, 7)
                throughput = upscale_throughput(workers, up, image, opts.concurrency, opts.waves, 10_000)
                for variant, f in throughput.items():
                    for mode, ips in f["images_per_s"].items():
                        _log(f"(b) {variant}, batching {mode}: " + ", ".join(f"{c} jobs {v:.1f}/s"
                                                                             for c, v in ips.items()))
            finally:
                for w in (default, *workers.values()):
                    w.close()
                client.close()
    figures = {"base_model": f"{base_rt.info.name}/{base_rt.info.version}", "upscaler": f"{up.name}/{up.version}",
               "upscale_default_steps": up.default_steps, "cascade": cascade, "upscale_jobs": throughput,
               "batching_default_mode": default_mode, "batching_choices": choices,
               "intra_op_threads": settings.onnx_intra_op_threads, "load_before": load_before,
               "blas_threads": blas_environment(),
               "load_after": loadavg(), "wall_s": time.perf_counter() - started}
    finish("upscale", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
