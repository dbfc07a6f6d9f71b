"""Step-level continuous batching on vs off, on one worker, through the real job path.

    python -m bench.batching                 # the default model, 1/4/8/16 concurrent jobs
    python -m bench.batching --quick         # tiny model, seconds (what tests/bench runs)

One in-process worker: the worker's own ONNX Runtime runtime (loaded once and shared by both
modes, so both run the same sessions), a JobStore on a real Redis (bench/_redis.py), and the
worker's JobExecutor run from N threads at once, as Celery's thread pool runs it. Each job is
one image with the model's defaults (sampler, steps, guidance: classifier-free guidance makes
it two UNet rows a step), PNG output, progress events and artifacts written to Redis.

  on   every job's sampler calls the shared BatchingDenoiser (services/worker/batching.py),
       exactly as the worker's ModelRegistry wires it
  off  every job's sampler calls the runtime's denoiser itself, concurrently

A "wave" creates N jobs, starts N threads at one barrier and ends when the last job is
SUCCEEDED; images/s = N / wall time. Waves and single jobs alternate between the modes, so
the machine's other load falls on both alike; each figure keeps its best wave (images/s) or
the median (single-job latency).
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
    """The worker's job path for one mode: JobExecutor over a registry holding the shared runtime."""

    def __init__(self, store, runtime, settings, batching: bool):
        from services.worker.executor import JobExecutor
        from services.worker.models import LoadedModel

        class Unbatched(LoadedModel):
            def denoiser(self, tiling, latent_shape):
                return self.runtime.denoiser(tiling)   # each job calls ORT itself

        kind = LoadedModel if batching else Unbatched
        self.loaded = kind(runtime, settings.max_batch, settings.batch_wait_ms)
        loaded = self.loaded

        class Registry:   # the ModelRegistry interface JobExecutor uses, over one loaded model
            def get(self, model: str, version: str = ""):
                return loaded

        self.executor = JobExecutor(store, Registry(), settings, name=f"bench-{'on' if batching else 'off'}")
        self.store = store

    def denoiser_stats(self) -> tuple[int, int]:
        """(calls, rows) of the batching denoisers so far."""
        ds = list(self.loaded._denoisers.values())
        return sum(d.stats.calls for d in ds), sum(d.stats.rows for d in ds)

    def wave(self, n: int, seed0: int) -> dict:
        from services.common.jobs import JobSpec, JobState, PromptSpec

        ids = []
        for i in range(n):
            spec = JobSpec(prompts=(PromptSpec(PROMPTS[(seed0 + i) % len(PROMPTS)]),), seeds=(seed0 + i,))
            ids.append(self.store.create(TENANT, spec)[0])
        barrier = threading.Barrier(n + 1)
        finished: dict[str, float] = {}
        states: dict[str, str | None] = {}

        def run(job_id: str) -> None:
            barrier.wait()
            states[job_id] = self.executor.run(job_id)
            finished[job_id] = time.perf_counter()

        calls0, rows0 = self.denoiser_stats()
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
        return {"wall_s": wall, "images": n, "latency_s": [finished[j] - start for j in ids],
                "calls": calls - calls0, "rows": rows - rows0}


def measure(workers: dict[str, Worker], opts: argparse.Namespace) -> dict:
    seed = 1000
    waves: dict = {m: {c: [] for c in opts.concurrency} for m in workers}
    for worker in workers.values():   # untimed: text cache, first-call allocations
        worker.wave(max(opts.concurrency), seed)
        seed += 100
    for w in range(opts.waves):
        for c in opts.concurrency:
            order = list(workers) if (w + c) % 2 == 0 else list(workers)[::-1]
            for mode in order:
                res = workers[mode].wave(c, seed)
                seed += c
                waves[mode][c].append(res)
                batch = f", mean batch {res['rows'] / res['calls']:.1f} rows" if res["calls"] else ""
                _log(f"[wave {w + 1}] {c:2d} concurrent jobs, batching {mode:3s}: {res['wall_s']:.2f} s, "
                     f"{c / res['wall_s']:.2f} images/s{batch}")
    single: dict = {m: [] for m in workers}
    for r in range(opts.single_runs):
        for mode in (list(workers) if r % 2 == 0 else list(workers)[::-1]):
            res = workers[mode].wave(1, seed)
            seed += 1
            single[mode].append(res["wall_s"])
    for mode, times in single.items():
        _log(f"single job, batching {mode:3s}: median {statistics.median(times):.3f} s, "
             f"min {min(times):.3f} s over {len(times)}")
    return {"waves": waves, "single": single}


def summarise(raw: dict, opts: argparse.Namespace) -> dict:
    on, off = raw["waves"]["on"], raw["waves"]["off"]
    figures: dict = {"concurrency": opts.concurrency, "waves": opts.waves, "images_per_s": {},
                     "images_per_s_median": {}, "speedup": {}, "mean_batch_rows": {}, "single_job_latency_s": {}}
    for mode, waves in (("on", on), ("off", off)):
        figures["images_per_s"][mode] = {str(c): max(w["images"] / w["wall_s"] for w in ws) for c, ws in waves.items()}
        figures["images_per_s_median"][mode] = {
            str(c): statistics.median(w["images"] / w["wall_s"] for w in ws) for c, ws in waves.items()}
    for c in opts.concurrency:
        figures["speedup"][str(c)] = figures["images_per_s"]["on"][str(c)] / figures["images_per_s"]["off"][str(c)]
        calls = sum(w["calls"] for w in on[c])
        figures["mean_batch_rows"][str(c)] = sum(w["rows"] for w in on[c]) / calls if calls else 0.0
    for mode, times in raw["single"].items():
        figures["single_job_latency_s"][mode] = {"median": statistics.median(times), "min": min(times),
                                                 "runs": len(times)}
    lat = figures["single_job_latency_s"]
    figures["single_job_latency_ratio"] = lat["on"]["median"] / lat["off"]["median"]
    at8 = figures["speedup"].get("8")
    figures["goals"] = {
        "throughput_speedup_at_8": at8,
        "throughput_speedup_at_8_met": at8 is not None and at8 >= GOAL_THROUGHPUT_AT_8,
        "single_job_latency_ratio": figures["single_job_latency_ratio"],
        "single_job_latency_met": figures["single_job_latency_ratio"] <= GOAL_SINGLE_LATENCY,
    }
    return figures


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = [str(c) for c in figures["concurrency"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("on", "o-"), ("off", "s--")):
        a.plot([int(c) for c in cs], [figures["images_per_s"][mode][c] for c in cs], style, label=f"batching {mode}")
    for c in cs:
        a.annotate(f"{figures['speedup'][c]:.2f}x", (int(c), figures["images_per_s"]["on"][c]), fontsize=8,
                   textcoords="offset points", xytext=(0, 6), ha="center")
    a.set_xlabel("concurrent jobs")
    a.set_ylabel("images/s (best wave)")
    a.set_title("throughput; labels: on/off", fontsize=9)
    a.legend(fontsize=8)
    lat = figures["single_job_latency_s"]
    b.bar(["batching on", "batching off"], [lat["on"]["median"], lat["off"]["median"]], color=["C0", "C1"])
    b.set_ylabel("single-job latency, median (s)")
    b.set_title(f"one job alone: on/off = {figures['single_job_latency_ratio']:.3f}", fontsize=9)
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
    p.add_argument("--plot", type=Path, default=Path("docs/batching.png"), help="'' for no plot")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.concurrency, opts.waves, opts.single_runs = [1, 2], 1, 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from services.common.settings import Settings
    from services.common.store import JobStore
    from services.worker.onnx_runtime import load_runtime

    started = time.perf_counter()
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
            workers = {"on": Worker(store, runtime, settings, True), "off": Worker(store, runtime, settings, False)}
            try:
                raw = measure(workers, opts)
            finally:
                workers["on"].loaded.close()
                client.close()
    figures = summarise(raw, opts)
    figures.update(model_source=f"{model}: {source}", steps=m.defaults.steps, sampler=m.defaults.sampler,
                   guidance_scale=m.defaults.guidance_scale, max_batch=settings.max_batch,
                   batch_wait_ms=settings.batch_wait_ms, intra_op_threads=settings.onnx_intra_op_threads,
                   wall_s=time.perf_counter() - started)
    _log("images/s on/off: " + ", ".join(f"{c} jobs {figures['speedup'][str(c)]:.2f}x" for c in opts.concurrency)
         + f"; single-job latency on/off {figures['single_job_latency_ratio']:.3f}")
    if str(opts.plot):
        plot(figures, opts.plot)
        _log(f"plot: {opts.plot}")
    finish("batching", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
