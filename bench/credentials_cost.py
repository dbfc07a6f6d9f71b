"""What content credentials and the image record cost a job (issue 15, goal: signing and the hash
record together <= 5 % of a default job's time): `python -m bench.credentials_cost`.

One in-process worker (bench/batching.py's: the worker's ONNX runtime, JobExecutor, a JobStore on
a real Redis) runs, in one process and one run, so the machine's load falls on both sides, the
default job (the base model's sampler, steps and guidance; one 32² PNG) as it is served (the
credentials stage signs the PNG, the reporter records its sha256, perceptual hash and thumbnail)
and without both (the plan's credentials stage taken out, the record skipped), in pairs,
alternating which runs first (ABBA). Figures: the median of the pairs' ratios, served / bare,
and the two parts' own share of a served job (timed inside it: the stage, and the record from
the fingerprint to Redis). Runs with numpy's BLAS on one thread, as `atelier worker` sets it;
the load average before and after is in the closing JSON line (bench.report).
--quick: a tiny random model, seconds (a smoke run).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._redis import bench_redis
from bench._worker_env import as_a_worker, blas_environment
from bench.batching import PROMPTS, Worker
from bench.report import finish
from bench.upscale import first_in_pair, loadavg, paired_ratios, quartiles

PREFIX = "bench-credentials:"
GOAL_SHARE = 0.05


def _log(message: str) -> None:
    print(message, flush=True)


class Parts:
    """The credentials stage and the image record, timed; `bare` switches both off."""

    def __init__(self):
        from services.common.plan import Stage
        from services.worker import pipeline
        from services.worker.delivered_images import DeliveredImages

        self.seconds = 0.0
        self.bare = False
        sign, record = pipeline.STAGES[Stage.CREDENTIALS], DeliveredImages.record

        def timed_sign(chunk) -> None:
            start = time.perf_counter()
            sign(chunk)
            self.seconds += time.perf_counter() - start

        def timed_record(images, job_id, payload, blob) -> None:
            if self.bare:
                return
            start = time.perf_counter()
            record(images, job_id, payload, blob)
            self.seconds += time.perf_counter() - start

        pipeline.STAGES[Stage.CREDENTIALS] = timed_sign
        DeliveredImages.record = timed_record

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def jobs(worker: Worker):
    from services.common.jobs import JobSpec, PromptSpec
    from services.common.plan import Stage, resolve

    def make(seed: int, served: bool):
        spec = JobSpec(prompts=(PromptSpec(PROMPTS[seed % len(PROMPTS)]),), seeds=(seed,))
        plan = resolve(spec, worker.loaded.runtime.info)
        if not served:
            plan = dataclasses.replace(plan, stages=tuple(s for s in plan.stages if s != Stage.CREDENTIALS))
        return spec.with_(plan=plan)

    return (lambda seed: make(seed, True)), (lambda seed: make(seed, False))


def job_pairs(worker: Worker, pairs: int, seed0: int) -> dict:
    served, bare = jobs(worker)
    parts = Parts()
    worker.wave(1, seed0, served)  # untimed: first calls of each network, the signer's first signature
    parts.take()
    times: dict[str, list[float]] = {"served": [], "bare": []}
    shares: list[float] = []
    spent_ms: list[float] = []
    for i in range(pairs):
        seed = seed0 + 1 + i
        order = ["bare", "served"] if first_in_pair(i) == "base" else ["served", "bare"]
        for side in order:
            parts.bare = side == "bare"
            wall = worker.wave(1, seed, served if side == "served" else bare)["wall_s"]
            times[side].append(wall)
            spent = parts.take()
            if side == "served":
                if spent <= 0.0:
                    raise RuntimeError("the served job neither signed nor recorded its image")
                shares.append(spent / wall)
                spent_ms.append(spent * 1000)
        _log(f"pair {i + 1}/{pairs}: bare {times['bare'][-1] * 1000:.0f} ms, served {times['served'][-1] * 1000:.0f} "
             f"ms, signing and record {shares[-1]:.2%} of it")
    parts.bare = False
    q1, med, q3 = quartiles(paired_ratios(times["bare"], times["served"]))
    s1, share, s3 = quartiles(shares)
    return {"pairs": pairs, "bare_ms_median": statistics.median(times["bare"]) * 1000,
            "served_ms_median": statistics.median(times["served"]) * 1000,
            "ratio_paired_median": med, "ratio_q1": q1, "ratio_q3": q3,
            "ratio_of_minima": min(times["served"]) / min(times["bare"]),
            "parts_ms_median": statistics.median(spent_ms),
            "share_median": share, "share_q1": s1, "share_q3": s3, "share_max": max(shares),
            "goal_share": GOAL_SHARE, "goal_met": share <= GOAL_SHARE}


def parts_alone(store, reps: int) -> dict:
    """Signing a 32² PNG, fingerprinting it and recording it in Redis, each timed alone (ms, median)."""
    import numpy as np

    from services.common import credentials, image_fingerprint
    from services.worker import content_credentials, images

    rgba = np.random.default_rng(0).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    png, mime = images.encode(rgba, "png")
    manifest = credentials.manifest_definition({"model_name": "bench", "seed": 1}, "0", mime)
    signer = content_credentials.signer()
    times: dict[str, list[float]] = {"sign": [], "fingerprint": [], "record": []}
    for i in range(reps):
        t0 = time.perf_counter()
        signed, _ = signer.sign(png, mime, manifest)
        t1 = time.perf_counter()
        fingerprint = image_fingerprint.of_file(signed, 32 * 32)
        t2 = time.perf_counter()
        store.record_image("bench", f"job-{i}", 0, mime, fingerprint, "{}", 600)
        t3 = time.perf_counter()
        for name, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            times[name].append(seconds)
    return {name: statistics.median(v) * 1000 for name, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a tiny random model, few pairs: a smoke run")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--model", default="atelier-emoji")
    p.add_argument("--pairs", type=int, default=16, help="bare / served job pairs")
    opts = p.parse_args(argv)
    as_a_worker("bench.credentials_cost", argv)
    if opts.quick:
        opts.pairs = 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import redis

    from services.common.settings import Settings, batching_mode
    from services.common.store import JobStore
    from services.worker.onnx_runtime import load_runtime

    started, load_before = time.perf_counter(), loadavg()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-credentials-") as tmp:
        repo, model = opts.repository, opts.model
        if opts.quick:
            from bench.tiny_models import tiny_repository

            repo, model = tiny_repository(Path(tmp) / "m"), "tiny"
        with bench_redis(PREFIX) as url:
            settings = Settings.from_env(redis_url=url, key_prefix=PREFIX, model_repository=repo, default_model=model)
            runtime = load_runtime(settings, model)
            mode = batching_mode(settings.batching, model)
            info = runtime.info
            _log(f"{info.name}/{info.version}: {info.width}² {info.default_sampler} {info.default_steps} steps; "
                 f"ORT {runtime.execution_provider}; load {load_before}")
            client = redis.Redis.from_url(url)
            worker = Worker(JobStore(client, PREFIX, result_ttl_seconds=600), runtime, settings, mode,
                            name="credentials")
            try:
                result = job_pairs(worker, opts.pairs, 100)
                alone = parts_alone(worker.store, 20 if opts.quick else 200)
            finally:
                worker.close()
                client.close()
    _log(f"served / bare default job: paired median {result['ratio_paired_median']:.3f}x (quartiles "
         f"{result['ratio_q1']:.3f}-{result['ratio_q3']:.3f}); signing and record: median "
         f"{result['parts_ms_median']:.1f} ms, {result['share_median']:.2%} "
         f"of a served job (max {result['share_max']:.2%}); goal <= {GOAL_SHARE:.0%}: "
         f"{'met' if result['goal_met'] else 'not met'}")
    _log("parts alone (ms, median): " + ", ".join(f"{k} {v:.2f}" for k, v in alone.items()))
    finish("credentials_cost", {"model": f"{info.name}/{info.version}", "jobs": result, "parts_alone_ms": alone,
                                "batching_mode": mode,
                                "blas_threads": blas_environment(), "load_before": load_before,
                                "load_after": loadavg(), "wall_s": time.perf_counter() - started})
    return 0


if __name__ == "__main__":
    sys.exit(main())
