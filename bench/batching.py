"""Step-level continuous batching on vs off, on one worker, through the real job path.

    python -m bench.batching                 # the default model, 1/4/8/16 concurrent jobs
    python -m bench.batching --quick         # tiny model, seconds (what tests/bench runs)

One in-process worker (in the environment `atelier worker` gives its process: bench/_worker_env.py):
the worker's own ONNX Runtime runtime (loaded once and shared by both
modes, so both run the same sessions), a JobStore on a real Redis (bench/_redis.py), and the
worker's JobExecutor run from N threads at once, as Celery's thread pool runs it. Each job is
one image with the model's defaults (sampler, steps, guidance: classifier-free guidance makes
it two UNet rows a step), PNG output, progress events and artifacts written to Redis.

  on   every job's sampler calls the shared BatchingDenoiser (services/worker/batching.py),
       exactly as the worker's ModelRegistry wires it (ATELIER_BATCHING=on)
  off  every job's sampler calls the runtime's denoiser itself, concurrently (ATELIER_BATCHING=off)
  auto the worker's default: its load-time probe (services/worker/batching_choice.py) picks on
       or off for the model on this machine; the log and the JSON say which and why
  on_wait<W>ms  like "on" with another batching wait (--extra-wait-ms): how long the owner
       holds a call open for jobs that have not sent their next step yet

A "wave" creates N jobs, starts N threads at one barrier and ends when the last job is
SUCCEEDED; images/s = N / wall time. Waves and single jobs take turns between the modes, so
the machine's other load falls on all alike; figures are medians over waves and single jobs
(the best wave is kept too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import _models
from bench._redis import bench_redis
from bench._worker_env import as_a_worker, blas_environment
from bench.report import finish

PREFIX = "bench-batching:"
TENANT = "bench"
PROMPTS = ("grinning face", "red heart", "cat face", "rocket", "pizza", "sun with face", "ghost", "tree")
GOAL_THROUGHPUT_AT_8 = 1.4
GOAL_SINGLE_LATENCY = 1.05


def _log(message: str) -> None:
    print(message, flush=True)


def prepare_model(root: Path, opts: argparse.Namespace) -> tuple[Path, str, str]:
    """(repository root, model name, where it came from)."""
    if opts.repository:
        return opts.repository, opts.model, f"repository {opts.repository}/{opts.model}"
    shipped = Path("models") / opts.model
    if not opts.quick and any(shipped.glob("*/manifest.json")):
        return Path("models"), opts.model, f"shipped {shipped}"
    if opts.quick:
        ckpt, source = _models.tiny_checkpoint(root / "tiny"), "tests' tiny model"
    else:
        choice = _models.default_model(opts.checkpoint)
        ckpt = choice.checkpoint or _models.write_checkpoint(root / "ckpt", choice.config)
        source = choice.source
    _models.export_repository(ckpt, root / "models", "bench-default", _log)
    return root / "models", "bench-default", source


class Worker:
    """The worker's job path for one mode: JobExecutor over a registry holding the shared runtimes
    (the base model's; an upscaler's too for cascades and UPSCALE jobs, bench/upscale.py).

    `batching` is a mode of ATELIER_BATCHING for every model: "on", "off" (each job calls the
    runtime's denoiser itself) or "auto" (the worker's load-time probe decides, per model)."""

    def __init__(self, store, runtime, settings, batching: str, wait_ms: float | None = None, name: str = "",
                 upscaler=None):
        from services.worker.batching_choice import choose
        from services.worker.executor import JobExecutor
        from services.worker.models import LoadedModel

        wait = settings.batch_wait_ms if wait_ms is None else wait_ms
        self.models = {}
        for rt in (runtime, upscaler):
            if rt is not None:
                self.models[rt.info.name] = LoadedModel(rt, settings.max_batch, wait,
                                                        choose(batching, rt, settings.max_batch))
        self.loaded = self.models[(runtime or upscaler).info.name]
        models = self.models

        class Registry:   # the ModelRegistry interface JobExecutor uses, over the loaded models
            def get(self, model: str, version: str = ""):
                return models[model]

        self.executor = JobExecutor(store, Registry(), settings, name=f"bench-{name}")
        self.store = store

    def choices(self) -> dict[str, dict]:
        """Per model: batching on or off, and why (auto's measurement)."""
        return {name: {"batching": m.batching.batching, "mode": m.batching.mode, "reason": m.batching.reason,
                       "gain": m.batching.probe.gain if m.batching.probe else None}
                for name, m in self.models.items()}

    def close(self) -> None:
        for m in self.models.values():
            m.close()

    def model_seconds(self) -> float:
        """Seconds spent inside the models' denoiser calls so far (the worker's own metric, which
        both the batching denoiser and an unbatched model's calls report)."""
        from prometheus_client import REGISTRY

        return sum(REGISTRY.get_sample_value("atelier_denoiser_call_seconds_sum", {"model": m.key}) or 0.0
                   for m in self.models.values())

    def denoiser_stats(self) -> tuple[int, int]:
        """(calls, rows) of the batching denoisers so far."""
        ds = [d for m in self.models.values() for d in m._denoisers.values()]
        return sum(d.stats.calls for d in ds), sum(d.stats.rows for d in ds)

    def text_job(self, seed: int):
        """A one-image job at the model's defaults, planned as the gateway would against the runtime."""
        from services.common.jobs import JobSpec, PromptSpec
        from services.common.plan import resolve

        spec = JobSpec(prompts=(PromptSpec(PROMPTS[seed % len(PROMPTS)]),), seeds=(seed,))
        return spec.with_(plan=resolve(spec, self.loaded.runtime.info))

    def wave(self, n: int, seed0: int, job=None) -> dict:
        """n jobs at once (`job(seed)` -> a planned JobSpec; default text_job), timed to the last one."""
        from services.common.jobs import JobState

        job = job or self.text_job
        ids = [self.store.create(TENANT, job(seed0 + i))[0] for i in range(n)]
        barrier = threading.Barrier(n + 1)
        finished: dict[str, float] = {}
        states: dict[str, str | None] = {}

        def run(job_id: str) -> None:
            barrier.wait()
            states[job_id] = self.executor.run(job_id)
            finished[job_id] = time.perf_counter()

        calls0, rows0 = self.denoiser_stats()
        model0 = self.model_seconds()
        threads = [threading.Thread(target=run, args=(j,), daemon=True) for j in ids]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        wall = max(finished.values()) - start
        bad = {j: s for j, s in states.items() if s != JobState.SUCCEEDED}
        if bad:
            raise RuntimeError(f"jobs did not succeed: {bad} ({self.store.get(next(iter(bad))).error_message!r})")
        calls, rows = self.denoiser_stats()
        return {"wall_s": wall, "images": n, "latency_s": [finished[j] - start for j in ids], "ids": ids,
                "calls": calls - calls0, "rows": rows - rows0, "model_s": self.model_seconds() - model0}


def _rotated(modes: list[str], k: int) -> list[str]:
    """The modes in turn order k: each mode goes first as often as the others."""
    k %= len(modes)
    return modes[k:] + modes[:k]


def measure(workers: dict[str, Worker], opts: argparse.Namespace) -> dict:
    seed = 1000
    modes = list(workers)
    waves: dict = {m: {c: [] for c in opts.concurrency} for m in modes}
    for worker in workers.values():   # untimed: text cache, first-call allocations
        worker.wave(max(opts.concurrency), seed)
        seed += 100
    for w in range(opts.waves):
        for i, c in enumerate(opts.concurrency):
            for mode in _rotated(modes, w + i):
                res = workers[mode].wave(c, seed)
                seed += c
                waves[mode][c].append(res)
                batch = f", mean batch {res['rows'] / res['calls']:.1f} rows" if res["calls"] else ""
                batch += f", in model calls {res['model_s'] / res['wall_s']:.2f} s/s"
                _log(f"[wave {w + 1}] {c:2d} concurrent jobs, batching {mode:12s}: {res['wall_s']:.2f} s, "
                     f"{c / res['wall_s']:.2f} images/s{batch}")
    single: dict = {m: [] for m in modes}
    for r in range(opts.single_runs):
        for mode in _rotated(modes, r):
            res = workers[mode].wave(1, seed)
            seed += 1
            single[mode].append(res["wall_s"])
    for mode, times in single.items():
        _log(f"single job, batching {mode:12s}: median {statistics.median(times):.3f} s, "
             f"min {min(times):.3f} s over {len(times)}")
    return {"waves": waves, "single": single}


def summarise(raw: dict, opts: argparse.Namespace) -> dict:
    """Per mode: images/s (median and best wave), speed-up over "off", mean rows per call, single-job
    latency. The goals are judged on the medians, for the worker's default settings ("on")."""
    figures: dict = {"concurrency": opts.concurrency, "waves": opts.waves, "images_per_s": {},
                     "images_per_s_best": {}, "speedup": {}, "speedup_best": {}, "mean_batch_rows": {},
                     "single_job_latency_s": {}, "single_job_latency_ratio": {}}
    for mode, waves in raw["waves"].items():
        rates = {str(c): [w["images"] / w["wall_s"] for w in ws] for c, ws in waves.items()}
        figures["images_per_s"][mode] = {c: statistics.median(r) for c, r in rates.items()}
        figures["images_per_s_best"][mode] = {c: max(r) for c, r in rates.items()}
        # Seconds inside model calls per second of wall time: with batching, the share of the wave
        # the one owner thread spent in ORT; without, the mean number of calls running at once.
        figures.setdefault("model_call_s_per_wall_s", {})[mode] = {
            str(c): statistics.median(w["model_s"] / w["wall_s"] for w in ws) for c, ws in waves.items()}
    off_lat = statistics.median(raw["single"]["off"])
    for mode, times in raw["single"].items():
        figures["single_job_latency_s"][mode] = {"median": statistics.median(times), "min": min(times),
                                                 "runs": len(times)}
    for mode, waves in raw["waves"].items():
        if mode == "off":
            continue
        for key, src in (("speedup", "images_per_s"), ("speedup_best", "images_per_s_best")):
            figures[key][mode] = {c: figures[src][mode][c] / figures[src]["off"][c] for c in figures[src][mode]}
        figures["mean_batch_rows"][mode] = {
            str(c): sum(w["rows"] for w in ws) / max(1, sum(w["calls"] for w in ws)) for c, ws in waves.items()}
        figures["single_job_latency_ratio"][mode] = figures["single_job_latency_s"][mode]["median"] / off_lat
    at8 = figures["speedup"]["on"].get("8")
    ratio = figures["single_job_latency_ratio"]["on"]
    figures["goals"] = {
        "throughput_speedup_at_8": at8,
        "throughput_speedup_at_8_met": at8 is not None and at8 >= GOAL_THROUGHPUT_AT_8,
        "single_job_latency_ratio": ratio,
        "single_job_latency_met": ratio <= GOAL_SINGLE_LATENCY,
    }
    return figures


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = [str(c) for c in figures["concurrency"]]
    modes = list(figures["images_per_s"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, mode in enumerate(modes):
        ys = [figures["images_per_s"][mode][c] for c in cs]
        a.plot([int(c) for c in cs], ys, "s--" if mode == "off" else "o-", label=f"batching {mode}", color=f"C{k}")
        if mode != "off":
            for c, y in zip(cs, ys, strict=True):
                a.annotate(f"{figures['speedup'][mode][c]:.2f}x", (int(c), y), fontsize=7, color=f"C{k}",
                           textcoords="offset points", xytext=(0, 5), ha="center")
    a.set_xlabel("concurrent jobs (one image each)")
    a.set_ylabel("images/s (median wave)")
    a.set_title("throughput; labels: speed-up over batching off", fontsize=9)
    a.legend(fontsize=8)
    lat = figures["single_job_latency_s"]
    b.bar(modes, [lat[m]["median"] for m in modes], color=[f"C{k}" for k in range(len(modes))])
    b.set_ylabel("single-job latency, median (s)")
    b.set_title("one job alone; on/off = " + ", ".join(f"{m}: {r:.3f}" for m, r in
                                                        figures["single_job_latency_ratio"].items()), fontsize=8)
    fig.suptitle(figures.get("model_source", ""), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model, one wave: a smoke run for tests")
    p.add_argument("--repository", type=Path, help="model repository root (default: ./models if it has --model)")
    p.add_argument("--model", default="atelier-emoji")
    p.add_argument("--checkpoint", type=Path, help="Atelier checkpoint to export when no repository has the model")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--waves", type=int, default=3)
    p.add_argument("--single-runs", type=int, default=12)
    p.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: the worker's setting)")
    p.add_argument("--modes", nargs="+", default=["off", "on", "auto"], choices=["off", "on", "auto"],
                   help="ATELIER_BATCHING modes to compare (off first: the speed-ups are over it)")
    p.add_argument("--extra-wait-ms", type=float, nargs="*", default=[],
                   help="also measure batching with these waits (ms) besides the worker's setting")
    p.add_argument("--plot", type=Path, default=Path("docs/batching.png"), help="'' for no plot")
    opts = p.parse_args(argv)
    as_a_worker("bench.batching", argv)
    if opts.quick:
        opts.concurrency, opts.waves, opts.single_runs, opts.extra_wait_ms = [1, 2], 1, 2, []
        opts.modes = [m for m in opts.modes if m != "auto"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from services.common.settings import Settings
    from services.common.store import JobStore
    from services.worker.onnx_runtime import load_runtime

    started, load_before = time.perf_counter(), [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="atelier-bench-batching-") as tmp:
        repo, model, source = prepare_model(Path(tmp), opts)
        with bench_redis(PREFIX) as url:
            import redis

            overrides = {"onnx_intra_op_threads": opts.threads} if opts.threads is not None else {}
            settings = Settings.from_env(redis_url=url, key_prefix=PREFIX, model_repository=repo, default_model=model,
                                         **overrides)
            runtime = load_runtime(settings, model)
            m = runtime.manifest
            latent = list(runtime.info.latent_shape(m.image.width, m.image.height))
            _log(f"model {model} ({source}): UNet latent {latent}, {m.defaults.steps} steps {m.defaults.sampler}, "
                 f"guidance {m.defaults.guidance_scale}; "
                 f"max batch {settings.max_batch} rows, wait {settings.batch_wait_ms} ms; redis {url}")
            client = redis.Redis.from_url(url)
            store = JobStore(client, PREFIX, result_ttl_seconds=600)
            workers = {mode: Worker(store, runtime, settings, mode, name=mode) for mode in opts.modes}
            for wait in opts.extra_wait_ms:   # the same worker with another batching wait, for comparison
                workers[f"on_wait{wait:g}ms"] = Worker(store, runtime, settings, "on", wait, name=f"wait{wait:g}")
            for mode, worker in workers.items():
                for name, c in worker.choices().items():
                    _log(f"batching {mode}: {name} {'on' if c['batching'] else 'off'} ({c['reason']})")
            try:
                raw = measure(workers, opts)
            finally:
                for worker in workers.values():
                    worker.close()
                client.close()
    figures = summarise(raw, opts)
    figures.update(blas_threads=blas_environment(), load_before=load_before,
                   load_after=[round(v, 2) for v in os.getloadavg()],
                   batching_choices={mode: w.choices() for mode, w in workers.items()},
                   model_source=f"{model}: {source}", steps=m.defaults.steps, sampler=m.defaults.sampler,
                   guidance_scale=m.defaults.guidance_scale, max_batch=settings.max_batch,
                   batch_wait_ms=settings.batch_wait_ms, intra_op_threads=settings.onnx_intra_op_threads,
                   wall_s=time.perf_counter() - started)
    for mode, speedup in figures["speedup"].items():
        _log(f"{mode}: images/s over off (median waves) " + ", ".join(f"{c} jobs {v:.2f}x" for c, v in speedup.items())
             + f"; single-job latency over off {figures['single_job_latency_ratio'][mode]:.3f}")
    if str(opts.plot):
        plot(figures, opts.plot)
        _log(f"plot: {opts.plot}")
    finish("batching", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
