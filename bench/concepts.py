"""What the output concept check costs a job (issue 15, goal <= 5 % of a default job): `python -m bench.concepts`.

One in-process worker (bench/batching.py's: the worker's ONNX runtimes, JobExecutor, a JobStore
on a real Redis) runs, in one process and one run, so the machine's load falls on both sides:

(a) the default job (the base model's sampler, steps and guidance; one 32² image) planned as a
    tenant that blocks no output concept (no check) and as one that blocks every concept the
    classifier knows (Stage.CONCEPTS on every image), in pairs, alternating which runs first
    (ABBA): the median of the pairs' ratios, checked / plain, and the ratio of the fastest of
    each side; and, inside every checked job, the seconds its concept stage took over the job's
    own wall time (the same job, so the machine's load falls on both parts alike): the figure
    that stays put on a loaded machine.
(b) the classifier alone on the worker's runtime: milliseconds per call at 1 and 8 images.

Runs with numpy's BLAS on one thread, as `atelier worker` sets it. Prints progress and ends with
one JSON line (bench.report), the load average before and after included.
--quick: tiny random models, seconds (a smoke run).
"""

from __future__ import annotations

import argparse
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

PREFIX = "bench-concepts:"
GOAL_RATIO = 1.05


def _log(message: str) -> None:
    print(message, flush=True)


def checked_job(worker: Worker, classifier):
    """A default job whose tenant blocks every concept the classifier knows."""
    from services.common.jobs import JobSpec, PromptSpec
    from services.common.plan import concept_check_plan, resolve

    info = classifier.info
    check = concept_check_plan(info.name, info.version, info.sha256, info.concepts, "bench-everything",
                               dict.fromkeys(info.concepts, "DROP"))

    def make(seed: int):
        spec = JobSpec(prompts=(PromptSpec(PROMPTS[seed % len(PROMPTS)]),), seeds=(seed,))
        return spec.with_(plan=resolve(spec, worker.loaded.runtime.info, concept_check=check))

    return make


class StageClock:
    """The worker's concept stage, timed: seconds spent in it since the last `take()`."""

    def __init__(self):
        from services.common.plan import Stage
        from services.worker import pipeline

        self.seconds = 0.0
        stage = pipeline.STAGES[Stage.CONCEPTS]

        def timed(chunk) -> None:
            start = time.perf_counter()
            try:
                stage(chunk)
            finally:
                self.seconds += time.perf_counter() - start

        pipeline.STAGES[Stage.CONCEPTS] = timed

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def job_pairs(worker: Worker, classifier, pairs: int, seed0: int) -> dict:
    checked = checked_job(worker, classifier)
    clock = StageClock()
    worker.wave(1, seed0)              # untimed: first calls of each network
    worker.wave(1, seed0, checked)
    clock.take()
    times: dict[str, list[float]] = {"plain": [], "checked": []}
    shares: list[float] = []
    for i in range(pairs):
        seed = seed0 + 1 + i
        order = ["plain", "checked"] if first_in_pair(i) == "base" else ["checked", "plain"]
        for side in order:
            wall = worker.wave(1, seed, checked if side == "checked" else None)["wall_s"]
            times[side].append(wall)
            stage = clock.take()
            if side == "checked":
                if stage <= 0.0:
                    raise RuntimeError("the checked job ran no concept stage")
                shares.append(stage / wall)
        _log(f"[a] pair {i + 1}/{pairs}: plain {times['plain'][-1] * 1000:.0f} ms, "
             f"checked {times['checked'][-1] * 1000:.0f} ms, its concept stage {shares[-1]:.2%} of it")
    ratios = paired_ratios(times["plain"], times["checked"])
    q1, med, q3 = quartiles(ratios)
    s1, share, s3 = quartiles(shares)
    return {"pairs": pairs, "plain_ms_median": statistics.median(times["plain"]) * 1000,
            "checked_ms_median": statistics.median(times["checked"]) * 1000,
            "plain_ms_min": min(times["plain"]) * 1000, "checked_ms_min": min(times["checked"]) * 1000,
            "ratio_of_minima": min(times["checked"]) / min(times["plain"]),
            "ratio_paired_median": med, "ratio_q1": q1, "ratio_q3": q3,
            "stage_share_median": share, "stage_share_q1": s1, "stage_share_q3": s3,
            "stage_share_max": max(shares),
            "goal": GOAL_RATIO, "goal_met": share <= GOAL_RATIO - 1.0}


def classifier_alone(classifier, reps: int) -> dict:
    import numpy as np

    side = classifier.info.image_size
    rng = np.random.default_rng(0)
    out = {}
    for n in (1, 8):
        images = rng.integers(0, 256, (n, side, side, 4), dtype=np.uint8)
        classifier.probabilities(images)
        seconds = []
        for _ in range(reps):
            start = time.perf_counter()
            classifier.probabilities(images)
            seconds.append(time.perf_counter() - start)
        out[str(n)] = {"ms_median": statistics.median(seconds) * 1000,
                       "ms_per_image": statistics.median(seconds) * 1000 / n}
    return out


def tiny_concepts(root: Path) -> Path:
    """A random concept classifier exported into `root` (--quick)."""
    import torch

    from diffusion.data.concept_labels import CONCEPTS
    from diffusion.nets.concept_net import ConceptNet, ConceptNetConfig
    from diffusion.training.concepts import write_package
    from export.pipeline import ExportOptions, export_model

    torch.manual_seed(0)
    net = ConceptNet(ConceptNetConfig(channels=(4, 8), concepts=CONCEPTS)).eval()
    report = {"thresholds": dict.fromkeys(CONCEPTS, 0.5), "options": {"max_false_flags": 0.002}, "seconds": 0.0,
              "concepts": {}, "folds": 0, "test_flagged_any": {"images": 0, "of": 0}}
    package = write_package(root / "concepts-package", net, report, {}, [], "bench.concepts --quick")
    export_model(package, ExportOptions(name="tiny-concepts", version="1", out=root))
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny random models, few runs: a smoke run")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--model", default="atelier-emoji")
    p.add_argument("--classifier", default="atelier-concepts")
    p.add_argument("--pairs", type=int, default=16, help="(a): plain / checked job pairs")
    p.add_argument("--reps", type=int, default=200, help="(b): calls per batch size")
    p.add_argument("--plot", type=Path, default=None, help="accepted for the bench convention; no plot")
    opts = p.parse_args(argv)
    as_a_worker("bench.concepts", argv)
    if opts.quick:
        opts.pairs, opts.reps = 2, 5
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from services.common.settings import Settings, batching_mode
    from services.common.store import JobStore
    from services.worker.concept_runtime import load_concept_classifier
    from services.worker.onnx_runtime import load_runtime

    started, load_before = time.perf_counter(), loadavg()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-concepts-") as tmp:
        repo, model, classifier_name = opts.repository, opts.model, opts.classifier
        if opts.quick:
            from bench.tiny_models import tiny_repository

            repo, model, classifier_name = tiny_concepts(tiny_repository(Path(tmp) / "m")), "tiny", "tiny-concepts"
        with bench_redis(PREFIX) as url:
            import redis

            settings = Settings.from_env(redis_url=url, key_prefix=PREFIX, model_repository=repo, default_model=model,
                                         concept_classifier=classifier_name)
            base_rt = load_runtime(settings, model)
            classifier = load_concept_classifier(settings, classifier_name)
            mode = batching_mode(settings.batching, model)
            info = base_rt.info
            _log(f"base {info.name}/{info.version}: {info.width}² {info.default_sampler} {info.default_steps} steps, "
                 f"guidance {info.default_guidance_scale}; classifier {classifier.info.name}/{classifier.info.version} "
                 f"({', '.join(classifier.info.concepts)}); ORT {base_rt.execution_provider}; load {load_before}")
            client = redis.Redis.from_url(url)
            store = JobStore(client, PREFIX, result_ttl_seconds=600)
            worker = Worker(store, base_rt, settings, mode, name="concepts")
            try:
                pairs = job_pairs(worker, classifier, opts.pairs, 100)
                _log(f"(a) checked / plain default job: paired median {pairs['ratio_paired_median']:.3f}x "
                     f"(quartiles {pairs['ratio_q1']:.3f}-{pairs['ratio_q3']:.3f}), fastest of each "
                     f"{pairs['ratio_of_minima']:.3f}x; medians {pairs['plain_ms_median']:.0f} and "
                     f"{pairs['checked_ms_median']:.0f} ms; the concept stage's share of a checked job: median "
                     f"{pairs['stage_share_median']:.2%} (max {pairs['stage_share_max']:.2%}); goal <= "
                     f"{GOAL_RATIO - 1:.0%}: {'met' if pairs['goal_met'] else 'not met'}")
                alone = classifier_alone(classifier, opts.reps)
                _log("(b) classifier alone: " + ", ".join(f"{n} images {v['ms_median']:.2f} ms"
                                                         for n, v in alone.items()))
            finally:
                worker.close()
                client.close()
    figures = {"base_model": f"{info.name}/{info.version}",
               "classifier": f"{classifier.info.name}/{classifier.info.version}", "jobs": pairs,
               "classifier_alone": alone,
               "classifier_share_of_plain_job": alone["1"]["ms_median"] / pairs["plain_ms_median"],
               "batching_mode": mode, "intra_op_threads": settings.onnx_intra_op_threads,
               "blas_threads": blas_environment(), "load_before": load_before, "load_after": loadavg(),
               "wall_s": time.perf_counter() - started}
    finish("concepts", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
