"""What the service costs on top of sampling: `python -m bench.gateway [--quick]` (issues 7, 19).

Runs the real stack (atelier_cli.up.EmbeddedStack: a private Redis, one Celery worker
process, the gRPC gateway) on the default model, and in the same run:

1. three jobs of the interactive path through gRPC + Redis + worker, each against the same
   job sampled in-process (services.worker.pipeline on an ONNX runtime loaded with the same
   settings), in interleaved pairs of alternating order, so that the machine's drift (other
   work shares these cores) hits both sides alike: a minimal job (1 step, the smallest size
   the model samples), a fast job (the 4-step consistency model, models/atelier-emoji-fast,
   where the repository has it) and a default job (native size, default sampler and steps);
   each job's time split into the stages of bench._gateway_timing (accept, screen, admit,
   enqueue, pickup, run, finish, deliver) and the in-process job's into its compute stages; goals:
   the minimal job's fixed overhead <= 3 ms at p50 and p99 <= 20 ms, the fast job's
   overhead <= 10 %, the default job's <= 2 % (paired medians); and the Redis commands each
   costs, counted with MONITOR (bench._gateway_trips: the same whatever the machine's load);
2. Submits accepted per second from 50 concurrent asyncio SDK clients in a separate
   process, bounded in jobs and seconds: with the worker paused (SIGSTOP: the gateway's
   own capacity on this machine), with it running its backlog beside the gateway on the
   same cores, and paused again after 100,000 more keys in Redis (a day of job records).

The machine's load averages are recorded before, between and after. Prints progress, then
one JSON line (bench.report). By default it serves the newest shipped version of
models/atelier-emoji (bench._gateway_model); --repository names another.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench._gateway_timing import GatewayProbe, InProcess, InProcessTiming, ServiceTiming, time_service_job
from bench._gateway_trips import commands_per_job
from bench._worker_env import as_a_worker, blas_environment

# Goals of issue 19 (docs/BENCHMARKS.md, "Interactive latency"): overhead of the service over
# the same job in-process, as a paired median, and the minimal job's fixed cost and tail.
GOAL_PCT = {"default": 2.0, "fast": 10.0}
GOAL_FIXED_MS = 3.0  # minimal job: service p50 - in-process p50
GOAL_MINIMAL_P99_MS = 20.0
# After a run, ONNX Runtime's pool threads may still hold the cores; a pause before each timed
# run keeps one side's tail out of the other side's figure (longer after longer jobs).
SETTLE_SECONDS = {"default": 0.3, "fast": 0.1, "minimal": 0.05}
# Admission limits out of the way: the bench measures the path, not the quotas.
UNLIMITED = {"tenant_max_jobs_in_flight": 10**7, "tenant_jobs_per_minute": 10**8,
             "max_queue_depth_interactive": 10**7, "max_queue_depth_batch": 10**7}
FAST_MODEL = "atelier-emoji-fast"


def say(text: str) -> None:
    print(text, flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def summary(values: list[float]) -> dict[str, float]:
    """mean / median / min / max in ms of seconds."""
    return {"mean_ms": ms(statistics.fmean(values)), "median_ms": ms(statistics.median(values)),
            "min_ms": ms(min(values)), "max_ms": ms(max(values))}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stage_medians(stages: list[dict[str, float]]) -> dict[str, float]:
    return {name: ms(statistics.median(s[name] for s in stages)) for name in stages[0]}


def quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [round(values[0], 2)] * 3
    return [round(q, 2) for q in statistics.quantiles(values, n=4)]


# --- 1. one kind of job, through the service and in-process, in interleaved pairs


@dataclass(frozen=True)
class Workload:
    name: str  # default, fast or minimal
    describe: str
    local: InProcess
    fields: dict[str, Any]  # GenerateRequest fields for the service, and in-process where they apply


def paired(client, probe: GatewayProbe, work: Workload, pairs: int, warmup: int) -> dict[str, Any]:
    """`pairs` jobs each way, ABBA, each pair a fresh prompt, one after another."""
    say(f"  {work.name}: {work.describe}; {warmup} warm-up + {pairs} interleaved pairs")
    local, settle = work.local, SETTLE_SECONDS[work.name]
    local_fields = {k: v for k, v in work.fields.items() if k in ("width", "height", "steps")}
    for i in range(warmup):  # first jobs pay for connections, caches, model loads and ORT's first runs
        time_service_job(client, f"warm-up sprite {i}", probe, seeds=[i], **work.fields)
        local.run(f"warm-up sprite {i}", seed=i, **local_fields)
    service: list[ServiceTiming] = []
    inproc: list[InProcessTiming] = []
    for i in range(pairs):
        # A fresh prompt for each pair: both sides encode it once (the text cache is warm for neither).
        prompt, seed = f"a grinning cat face, variant {i}", 1000 + i
        first_service = i % 2 == 0  # ABBA: neither side always runs on the warmer cache
        if not first_service:
            time.sleep(settle)
            inproc.append(local.timed(prompt, seed=seed, **local_fields))
        time.sleep(settle)
        t = time_service_job(client, prompt, probe, seeds=[seed], **work.fields)
        if t.state != "JOB_STATE_SUCCEEDED":
            raise RuntimeError(f"a {work.name} job ended {t.state}")
        service.append(t)
        if first_service:
            time.sleep(settle)
            inproc.append(local.timed(prompt, seed=seed, **local_fields))
        if pairs <= 16 or i % 8 == 0 or i == pairs - 1:
            say(f"    pair {i + 1:3d}: service {ms(t.total):7.1f} ms  in-process {ms(inproc[-1].total):7.1f} ms  "
                f"stages {json.dumps({k: ms(v) for k, v in t.parts().items()})}")
    totals, local_totals = [t.total for t in service], [p.total for p in inproc]
    paired_pct = [(s - p) / p * 100.0 for s, p in zip(totals, local_totals, strict=True)]
    paired_ms = [s - p for s, p in zip(totals, local_totals, strict=True)]
    in_process_median = statistics.median(local_totals)
    fixed = statistics.median(t.fixed for t in service)
    out = {
        "pairs": pairs, "service": summary(totals), "in_process": summary(local_totals),
        "p50_ms": ms(percentile(totals, 0.50)), "p90_ms": ms(percentile(totals, 0.90)),
        "p99_ms": ms(percentile(totals, 0.99)),
        "in_process_p50_ms": ms(percentile(local_totals, 0.50)),
        "stages_median_ms": stage_medians([t.stages for t in service]),
        "in_process_stages_median_ms": stage_medians([p.stages for p in inproc]),
        # accept + admit + enqueue + pickup + deliver: no sampling in them, so this much is certain
        "fixed_overhead_median_ms": ms(fixed),
        # the same without the prompt check, which is the content policy's cost rather than the path's
        "fixed_overhead_without_screen_median_ms": ms(statistics.median(t.fixed - t.stages["screen"] for t in service)),
        "overhead_ms_without_screen_paired_median": ms(statistics.median(
            s - t.stages["screen"] - p for s, t, p in zip(totals, service, local_totals, strict=True))),
        "overhead_pct_lower_bound": round(fixed / in_process_median * 100, 2),
        # run + finish against the whole in-process job: the worker's events, writes and batching
        "run_minus_in_process_median_ms": ms(statistics.median(
            t.stages["run"] + t.stages["finish"] - p.total for t, p in zip(service, inproc, strict=True))),
        "overhead_ms_paired_median": ms(statistics.median(paired_ms)),
        "overhead_ms_of_medians": ms(statistics.median(totals) - in_process_median),
        "overhead_pct_paired_median": round(statistics.median(paired_pct), 2),
        "overhead_pct_paired_quartiles": quartiles(paired_pct),
        "overhead_pct_of_medians": round((statistics.median(totals) / in_process_median - 1) * 100, 2),
        "overhead_pct_of_means": round((statistics.fmean(totals) / statistics.fmean(local_totals) - 1) * 100, 2),
    }
    say(f"    service p50 {out['p50_ms']} ms p99 {out['p99_ms']} ms, in-process p50 {out['in_process_p50_ms']} ms; "
        f"overhead {out['overhead_ms_paired_median']} ms = {out['overhead_pct_paired_median']} % (paired median); "
        f"stages {out['stages_median_ms']}; in-process {out['in_process_stages_median_ms']}")
    return out


def with_goal(name: str, out: dict[str, Any]) -> dict[str, Any]:
    if name == "minimal":
        fixed = out["overhead_ms_of_medians"]
        out.update(goal_fixed_ms=GOAL_FIXED_MS, goal_p99_ms=GOAL_MINIMAL_P99_MS,
                   goal_met=fixed <= GOAL_FIXED_MS and out["p99_ms"] <= GOAL_MINIMAL_P99_MS)
    else:
        out.update(goal_pct=GOAL_PCT[name], goal_met=out["overhead_pct_paired_median"] <= GOAL_PCT[name])
    return out


def workloads(local: InProcess, fast: InProcess | None) -> list[Workload]:
    info = local.info
    side = local.smallest_size()
    out = [Workload("minimal", f"{side}x{side}, 1 step", local, {"width": side, "height": side, "steps": 1})]
    if fast is not None:
        f = fast.info
        out.append(Workload("fast", f"{f.name} {f.width}x{f.height}, {f.default_sampler}, {f.default_steps} steps",
                            fast, {"model": f.name}))
    out.append(Workload("default", f"{info.width}x{info.height}, {info.default_sampler}, {info.default_steps} "
                                   f"steps, guidance {info.default_guidance_scale}", local, {}))
    return out


def latency(client, probe: GatewayProbe, work: list[Workload], pairs: dict[str, int], warmup: int) -> dict[str, Any]:
    say("[1/2] the interactive path, per stage: " + ", ".join(w.name for w in work))
    figures = {}
    for w in work:
        out = paired(client, probe, w, pairs[w.name], warmup)
        info = w.local.info
        out.update(model=f"{info.name}/{info.version}", width=w.fields.get("width", info.width),
                   height=w.fields.get("height", info.height), steps=w.fields.get("steps", info.default_steps),
                   sampler=info.default_sampler)
        figures[w.name] = with_goal(w.name, out)
    return figures


def redis_commands(stack, client, work: list[Workload], jobs: int = 20) -> dict[str, Any]:
    """Redis commands per job of each workload, counted (bench._gateway_trips): independent of the load."""
    url = stack.settings.redis_url
    out = {}
    for w in work:
        counted = commands_per_job(url, lambda i, w=w: time_service_job(client, f"counted {w.name} {i}", seeds=[i],
                                                                        **w.fields), jobs)
        say(f"  {w.name}: {counted['sent_per_job']} commands sent a job ({counted['scripts_per_job']} of them "
            f"scripts), {counted['run_by_scripts']} run inside scripts; {counted['sent_by_command']}")
        out[w.name] = counted
    return out


# --- 2. Submits accepted per second


def fill_keyspace(stack, keys: int) -> None:
    """Stand-ins for the records of finished jobs that Redis keeps for a day (result_ttl_seconds)."""
    import redis

    client = redis.Redis.from_url(stack.settings.redis_url)
    prefix = stack.settings.key_prefix
    for start in range(0, keys, 10_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(keys, start + 10_000)):
            pipe.set(f"{prefix}job:filler{i:08d}", b"x", ex=3600)
        pipe.execute()


def submit_load(stack, clients: int, jobs: int, seconds: float, paused: bool, first: int = 0) -> dict[str, Any]:
    """`first`: the number of the run's first prompt, past every earlier run's (bench._gateway_load)."""
    import redis

    keys = redis.Redis.from_url(stack.settings.redis_url).dbsize()
    pgid = stack.worker.pid  # the worker runs in its own session (process group)
    cmd = [sys.executable, "-m", "bench._gateway_load", "--address", stack.address, "--key", stack.api_key,
           "--clients", str(clients), "--jobs", str(jobs), "--seconds", str(seconds), "--first", str(first)]
    if paused:
        os.killpg(pgid, signal.SIGSTOP)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120,
                              cwd=Path(__file__).resolve().parent.parent)
    finally:
        if paused:
            os.killpg(pgid, signal.SIGCONT)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(worker="paused" if paused else "running", redis_keys_before=keys)
    say(f"  worker {result['worker']:7s}, {keys:7d} keys in Redis: {result['accepted']} accepted in "
        f"{result['seconds']:.2f} s = {result['accepted_per_second']:.0f}/s (Submit p50 "
        f"{result['submit_p50_ms']:.1f} ms, p99 {result['submit_p99_ms']:.1f} ms), refused {result['refused']}")
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}


def serial_submits(stack, client, count: int = 40, first: int = 0) -> dict[str, Any]:
    """One client's Submit latency with the worker paused: the accept path alone, no queueing
    (prompts numbered from `first`, new to the gateway as in submit_load)."""
    import redis

    keys = redis.Redis.from_url(stack.settings.redis_url).dbsize()
    os.killpg(stack.worker.pid, signal.SIGSTOP)
    try:
        took = []
        for i in range(count):
            started = time.perf_counter()
            client.submit(f"serial sprite {first + i}")
            took.append(time.perf_counter() - started)
    finally:
        os.killpg(stack.worker.pid, signal.SIGCONT)
    out = {"redis_keys_before": keys, "submits": count, "p50_ms": ms(percentile(took, 0.5)),
           "p90_ms": ms(percentile(took, 0.9))}
    say(f"  one client, worker paused, {keys:7d} keys in Redis: Submit p50 {out['p50_ms']} ms, p90 {out['p90_ms']} ms")
    return out


def submit_throughput(stack, client, clients: int, jobs: int, seconds: float, filler: int) -> dict[str, Any]:
    say(f"[2/2] Submit throughput: {clients} asyncio clients in another process, at most {jobs} jobs or "
        f"{seconds:g} s per run")
    # Each run's prompts new to the gateway: the prompt check keeps the clauses it has seen.
    load = [submit_load(stack, clients, jobs, seconds, paused, first=run * jobs)
            for run, paused in enumerate((True, False))]
    # A day of retained job records must not slow Submit down (it did while readiness SCANned).
    serial = [serial_submits(stack, client)]
    fill_keyspace(stack, filler)
    serial.append(serial_submits(stack, client, first=serial[0]["submits"]))
    load.append(submit_load(stack, clients, jobs, seconds, paused=True, first=2 * jobs))
    return {"load": load, "serial": serial}


# --- the run


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few jobs of each kind (for tests)")
    p.add_argument("--repository", type=Path, help="model repository (default: the shipped one, or a random export)")
    p.add_argument("--model", help="model name in --repository (default: its default model)")
    p.add_argument("--fast-model", help=f"the 4-step fast model (default {FAST_MODEL} where the repository has it)")
    p.add_argument("--redis-url", help="use this Redis instead of a private embedded one")
    p.add_argument("--pairs", type=int, help="default-job pairs (default 64; --quick 2)")
    p.add_argument("--fast-pairs", type=int, help="fast-job pairs (default 100; --quick 2)")
    p.add_argument("--minimal-jobs", type=int, help="minimal-job pairs (default 150; --quick 5)")
    p.add_argument("--clients", type=int, default=50, help="concurrent Submit clients (default 50)")
    p.add_argument("--submit-jobs", type=int, help="most Submits per load run (default 3000; --quick 40)")
    p.add_argument("--submit-seconds", type=float, help="longest load run (default 10; --quick 2)")
    p.add_argument("--filler-keys", type=int, help="keys added before the last Submit run (default 100000)")
    p.add_argument("--concurrency", type=int, default=4, help="worker threads (default 4, as `atelier up`)")
    p.add_argument("--skip-submit-load", action="store_true", help="leave out the Submits/s runs")
    p.add_argument("--only-submit-load", action="store_true",
                   help="only the Submits/s runs (part 2): no in-process runtimes, no timed jobs, no command counts")
    args = p.parse_args(argv)
    if args.only_submit_load and args.skip_submit_load:
        p.error("--only-submit-load and --skip-submit-load exclude each other")
    quick = args.quick
    args.pairs = args.pairs or (2 if quick else 64)
    args.fast_pairs = args.fast_pairs or (2 if quick else 100)
    args.minimal_jobs = args.minimal_jobs or (5 if quick else 150)
    args.submit_jobs = args.submit_jobs or (40 if quick else 3000)
    args.submit_seconds = args.submit_seconds or (2.0 if quick else 10.0)
    args.filler_keys = args.filler_keys if args.filler_keys is not None else (2000 if quick else 100_000)
    return args


def machine_load() -> list[float]:
    """The 1-, 5- and 15-minute load averages (what `uptime` prints)."""
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    from atelier_cli.up import EmbeddedStack
    from clients import Client
    from services.common.settings import Settings

    args = parse(argv)
    # The gateway and the in-process jobs run here: numpy's BLAS as `atelier gateway` and
    # `atelier worker` set it (services/common/blas.py).
    as_a_worker("bench.gateway", argv)
    started = time.perf_counter()
    if args.repository:
        repository, model, source = args.repository, args.model or "atelier-emoji", f"{args.repository}"
    else:
        from bench._gateway_model import default_repository

        repository, model, source = default_repository(say)
    fast_model = args.fast_model or (FAST_MODEL if (repository / FAST_MODEL).is_dir() else None)
    say(f"model {model} from {source}; fast model {fast_model or '(none in the repository)'}; load {machine_load()}")
    settings = Settings.from_env({}, model_repository=repository, default_model=model, grpc_listen="127.0.0.1:0",
                                 gateway_metrics_port=0, worker_metrics_port=0, **UNLIMITED)
    figures: dict[str, Any] = {"model": f"{model} ({source})", "quick": args.quick,
                               "worker_concurrency": args.concurrency, "blas_threads": blas_environment()}
    if not args.only_submit_load:
        local = InProcess(settings, model)
        fast = InProcess(settings, fast_model) if fast_model else None
        say(f"in-process runtime loaded in {local.load_seconds:.1f} s on {local.runtime.execution_provider}")
        figures["execution_provider"] = local.runtime.execution_provider
    figures["load_before"] = machine_load()
    jobs: dict[str, Any] = {}
    pairs = {"minimal": args.minimal_jobs, "fast": args.fast_pairs, "default": args.pairs}
    with EmbeddedStack(settings, redis_url=args.redis_url, worker_concurrency=args.concurrency) as stack:
        say(f"stack up in {time.perf_counter() - started:.1f} s: gateway {stack.address}, "
            f"worker pid {stack.worker.pid}, redis {'embedded' if stack.redis else args.redis_url}")
        probe = GatewayProbe(stack.gateway.jobs)
        with Client(stack.address, stack.api_key, timeout=120.0) as client:
            if not args.only_submit_load:
                workloads_of = workloads(local, fast)
                jobs = latency(client, probe, workloads_of, pairs, warmup=1 if args.quick else 3)
                figures.update({f"{name}_job": value for name, value in jobs.items()})
                figures["load_after_latency"] = machine_load()
                figures["redis_commands"] = redis_commands(stack, client, workloads_of, 5 if args.quick else 20)
            if not args.skip_submit_load:
                figures["submit"] = submit_throughput(stack, client, args.clients, args.submit_jobs,
                                                      args.submit_seconds, args.filler_keys)
    figures["load_after"] = machine_load()
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    for name, job in jobs.items():
        goal = (f"fixed {job['overhead_ms_of_medians']} ms (goal <= {GOAL_FIXED_MS}), p99 {job['p99_ms']} ms "
                f"(goal <= {GOAL_MINIMAL_P99_MS})" if name == "minimal" else
                f"overhead {job['overhead_pct_paired_median']} % paired median (goal <= {GOAL_PCT[name]} %)")
        say(f"{name} job: service p50 {job['p50_ms']} ms vs in-process {job['in_process_p50_ms']} ms; {goal}: "
            f"{'met' if job['goal_met'] else 'NOT met'}")
    report.finish("gateway", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
