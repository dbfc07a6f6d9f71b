"""Fast mode against the teacher's default, through the worker's job path (issue 14):
`python -m bench.fast`.

One process, one run, so the machine's load falls on both sides alike: two in-process workers
(bench/batching.py's: the worker's ONNX runtimes behind its batching denoiser, JobExecutor, a
JobStore on a real Redis), one serving the teacher (its manifest's defaults: UniPC, 20 steps,
classifier-free guidance = 40 UNet rows an image) and one the consistency-distilled model (its
defaults: `lcm`, 4 steps, guidance built in = 4 rows an image). Both with the worker's batching
setting (ATELIER_BATCHING, default auto, whose load-time probe may choose differently from run to
run on a loaded machine; `ATELIER_BATCHING=on` pins the batching denoiser for both).

(a) single-job latency: one-image jobs, the two models taking turns (ABBA), medians;
(b) images/s with 1 and 8 jobs at once: waves of the two models taking turns, medians;
(c) the 128² cascade (`upscale: 4` through the shipped upscaler at its default steps), when the
    repository has one: single-job latency and images/s at 8 jobs, both models.

Prints progress, the machine's load (`uptime`) before and after, and ends with one JSON line
(bench.report) holding the figures and fast/teacher ratios. --quick: tiny random models.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._redis import bench_redis
from bench.batching import Worker
from bench.report import finish
from bench.upscale import cascade_job, first_in_pair, rates

PREFIX = "bench-fast:"
GOAL_IMAGES_PER_S_RATIO = 8.0  # issue 14: 40 rows an image -> 4


def _log(message: str) -> None:
    print(message, flush=True)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def ratio(fast: float, teacher: float) -> float:
    return fast / teacher if teacher else float("nan")


def single_latency(workers: dict[str, Worker], runs: int, seed0: int, jobs: dict | None = None) -> dict[str, float]:
    """Median seconds of a one-image job per side, the sides in ABBA order."""
    jobs = jobs or {}
    times: dict[str, list[float]] = {k: [] for k in workers}
    a, b = list(workers)
    for i in range(runs):
        for side in ([a, b] if first_in_pair(i) == "base" else [b, a]):
            times[side].append(workers[side].wave(1, seed0 + i, jobs.get(side))["wall_s"])
    return {k: statistics.median(v) for k, v in times.items()}


def throughput(workers: dict[str, Worker], concurrency: list[int], waves: int, seed0: int,
               jobs: dict | None = None, label: str = "") -> tuple[dict, dict]:
    """({side: {jobs at once: median images/s}}, {side: {jobs at once: median seconds inside network
    calls per second of the wave}}), waves of the sides taking turns. With batching on, the calls
    are one at a time and the second figure is the share of the wave in the network; with it off,
    the jobs' own calls overlap and add up."""
    jobs = jobs or {}
    raw: dict[str, dict[str, list]] = {k: {str(c): [] for c in concurrency} for k in workers}
    seed = seed0
    sides = list(workers)
    for w in range(waves):
        for i, c in enumerate(concurrency):
            for side in (sides if (w + i) % 2 == 0 else sides[::-1]):
                res = workers[side].wave(c, seed, jobs.get(side))
                seed += c
                raw[side][str(c)].append(res)
                _log(f"{label}wave {w + 1}: {c} jobs on {side}: {res['wall_s']:.2f} s, "
                     f"{c / res['wall_s']:.2f} images/s, {res['rows']} rows in {res['calls']} batched calls, "
                     f"{res['model_s'] / res['wall_s']:.2f} s in network calls a second")
    ips = {k: {c: statistics.median(rates(ws)) for c, ws in by_c.items()} for k, by_c in raw.items()}
    share = {k: {c: statistics.median(w["model_s"] / w["wall_s"] for w in ws) for c, ws in by_c.items()}
             for k, by_c in raw.items()}
    return ips, share


def prepare(root: Path, opts: argparse.Namespace) -> tuple[Path, str, str, str | None]:
    """(repository, teacher, fast model, upscaler or None)."""
    if opts.quick:
        from bench.tiny_models import tiny_fast_repository, tiny_upscaler_repository

        models = tiny_fast_repository(root / "base")
        up = tiny_upscaler_repository(root / "up")
        (models / "tiny-upscale").symlink_to((up / "tiny-upscale").resolve())
        return models, "tiny", "tiny-fast", "tiny-upscale"
    upscaler = opts.upscaler if any((opts.repository / opts.upscaler).glob("*/manifest.json")) else None
    return opts.repository, opts.teacher, opts.fast, upscaler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny random models, few runs: a smoke run")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--teacher", default="atelier-emoji")
    p.add_argument("--fast", default="atelier-emoji-fast")
    p.add_argument("--upscaler", default="atelier-upscale")
    p.add_argument("--single-runs", type=int, default=20, help="(a): one-image jobs per model")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="(b): jobs at once")
    p.add_argument("--waves", type=int, default=5, help="(b), (c): waves per model and concurrency")
    p.add_argument("--plot", type=Path, default=None, help="accepted for the bench convention; no plot")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.single_runs, opts.concurrency, opts.waves = 2, [1, 2], 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from services.common.settings import Settings, batching_mode
    from services.common.store import JobStore
    from services.worker.onnx_runtime import load_runtime

    started, load_before = time.perf_counter(), uptime()
    _log(f"uptime before: {load_before}")
    with tempfile.TemporaryDirectory(prefix="atelier-bench-fast-") as tmp:
        repo, teacher, fast, upscaler = prepare(Path(tmp), opts)
        with bench_redis(PREFIX) as url:
            import redis

            settings = Settings.from_env(redis_url=url, key_prefix=PREFIX, model_repository=repo,
                                         default_model=teacher)
            runtimes = {"teacher": load_runtime(settings, teacher), "fast": load_runtime(settings, fast)}
            up_rt = load_runtime(settings, upscaler) if upscaler else None
            client = redis.Redis.from_url(url)
            store = JobStore(client, PREFIX, result_ttl_seconds=600)
            modes = {k: batching_mode(settings.batching, rt.info.name) for k, rt in runtimes.items()}
            workers = {k: Worker(store, rt, settings, modes[k], name=k, upscaler=up_rt) for k, rt in runtimes.items()}
            described = {}
            for k, rt in runtimes.items():
                i = rt.info
                rows = i.default_steps * (1 if i.guidance_input or i.default_guidance_scale == 1.0 else 2)
                described[k] = {"model": f"{i.name}/{i.version}", "sampler": i.default_sampler,
                                "steps": i.default_steps, "guidance": i.default_guidance_scale,
                                "rows_per_image": rows, "batching": workers[k].choices()[i.name]}
                choice = described[k]["batching"]
                _log(f"{k}: {i.name}/{i.version} {i.default_sampler} {i.default_steps} steps, guidance "
                     f"{i.default_guidance_scale} ({rows} UNet rows an image); batching "
                     f"{'on' if choice['batching'] else 'off'} ({choice['reason']})")
            try:
                for w in workers.values():   # untimed: text cache, first calls at every batch size
                    w.wave(max(opts.concurrency), 1)
                single = single_latency(workers, opts.single_runs, 100)
                _log("(a) single job: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in single.items()))
                ips, in_network = throughput(workers, opts.concurrency, opts.waves, 1000, label="(b) ")
                cascade = None
                if up_rt is not None:
                    jobs = {k: cascade_job(w, up_rt.info) for k, w in workers.items()}
                    for k, w in workers.items():
                        w.wave(max(opts.concurrency), 5000, jobs[k])
                    c_single = single_latency(workers, opts.single_runs, 6000, jobs)
                    _log("(c) cascade single job: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in c_single.items()))
                    c_ips, c_in = throughput(workers, [max(opts.concurrency)], opts.waves, 7000, jobs,
                                             label="(c) cascade ")
                    cascade = {"upscaler": f"{up_rt.info.name}/{up_rt.info.version}",
                               "upscale_steps": up_rt.info.default_steps, "single_s": c_single,
                               "images_per_s": c_ips, "network_s_per_s": c_in,
                               "latency_ratio_teacher_over_fast": ratio(c_single["teacher"], c_single["fast"]),
                               "images_per_s_ratio": {c: ratio(c_ips["fast"][c], c_ips["teacher"][c])
                                                      for c in c_ips["fast"]}}
            finally:
                for w in workers.values():
                    w.close()
                client.close()
    ratios = {c: ratio(ips["fast"][c], ips["teacher"][c]) for c in ips["fast"]}
    top = str(max(opts.concurrency))
    figures = {"models": described, "single_s": single,
               "latency_ratio_teacher_over_fast": ratio(single["teacher"], single["fast"]),
               "images_per_s": ips, "images_per_s_ratio": ratios, "network_s_per_s": in_network,
               "cascade": cascade,
               "goal_images_per_s_ratio": GOAL_IMAGES_PER_S_RATIO,
               "goal_met": {c: r >= GOAL_IMAGES_PER_S_RATIO for c, r in ratios.items()},
               "uptime_before": load_before, "uptime_after": uptime(), "wall_s": time.perf_counter() - started}
    met = "met" if ratios[top] >= GOAL_IMAGES_PER_S_RATIO else "not met"
    _log("fast / teacher images/s: " + ", ".join(f"{c} jobs {r:.1f}x" for c, r in ratios.items())
         + f"; single-job latency teacher / fast {figures['latency_ratio_teacher_over_fast']:.1f}x; goal >= "
         f"{GOAL_IMAGES_PER_S_RATIO:g}x at {top} jobs: {met}")
    if cascade:
        _log("cascade fast / teacher images/s: " + ", ".join(f"{c} jobs {r:.1f}x"
                                                             for c, r in cascade["images_per_s_ratio"].items()))
    _log(f"uptime after: {figures['uptime_after']}")
    finish("fast", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
