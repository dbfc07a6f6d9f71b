"""Soak: `python -m bench.soak --minutes 20` (issue 17).

A steady mixed load on the real stack (a Redis, one `atelier gateway` process, one
`atelier worker` process, as deployed), for a bounded time:

- Submits at a fixed rate (open loop: a slow answer does not slow the load down), of
  which most are small interactive jobs (1-2 steps), some batch jobs of a few images, some
  followed to the end on a Generate stream, some cancelled right after Submit, and some
  refused: an init image one byte over `ATELIER_MAX_UPLOAD_BYTES` and a width over
  `ATELIER_MAX_SIDE` (both INVALID_ARGUMENT, the upload travelling the whole way in);
- GetJob on accepted jobs.

Every window (a minute; --quick: seconds) it prints and records the Submit latency
(p50/p99), the counts of each answer, the queue depth, and the resident memory of the
gateway and worker processes. The goal (docs/RELIABILITY.md): memory after warm-up grows
at most 10 % by the end, and the p99 Submit latency stays flat from window to window. At
the end every accepted job must have finished (none lost).

Prints progress, then one JSON line (bench.report). By default it serves the newest shipped
version of models/atelier-emoji; --repository and --model name another.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import report

GROWTH_GOAL_PCT = 10.0
# The share of each kind of call in the load, per Submit slot.
MIX = (("interactive", 0.55), ("batch", 0.15), ("generate", 0.10), ("cancel", 0.05),
       ("oversized_upload", 0.10), ("oversized_side", 0.05))
UNLIMITED = {"tenant_max_jobs_in_flight": 10**6, "tenant_jobs_per_minute": 10**8,
             "max_queue_depth_interactive": 10**6, "max_queue_depth_batch": 10**6}


def say(text: str) -> None:
    print(text, flush=True)


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


@dataclass
class Window:
    """What happened in one window of the run."""

    submit_seconds: list[float] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)

    def count(self, answer: str) -> None:
        self.answers[answer] = self.answers.get(answer, 0) + 1


class Load:
    """Issues the mixed calls at a fixed rate and records every answer into the current window."""

    def __init__(self, address: str, key: str, rate: float, settings, seed: int = 0):
        from atelier.v1 import generation_pb2_grpc

        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
        self.stub = generation_pb2_grpc.GenerationStub(self.channel)
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.rate, self.settings = rate, settings
        self.rng = random.Random(seed)
        self.window = Window()
        self.accepted: list[str] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(32, thread_name_prefix="soak")
        self.oversized = os.urandom(settings.max_upload_bytes + 1)
        self.n = 0

    def record(self, answer: str, seconds: float | None = None, job_id: str = "") -> None:
        with self.lock:
            self.window.count(answer)
            if seconds is not None:
                self.window.submit_seconds.append(seconds)
            if job_id:
                self.accepted.append(job_id)

    def take_window(self) -> Window:
        with self.lock:
            done, self.window = self.window, Window()
            return done

    def request(self, kind: str):
        from atelier.v1 import generation_pb2 as gen
        from atelier.v1 import types_pb2

        self.n += 1
        fields: dict[str, Any] = {"prompt": f"a small red gem {self.n % 50}", "seeds": [self.n],
                                  "steps": 1 + self.n % 2}
        if kind == "batch":
            fields.update(priority=types_pb2.PRIORITY_BATCH, steps=3, seeds=[self.n, self.n + 1])
        elif kind == "oversized_upload":
            fields.update(init_image=types_pb2.InputImage(data=self.oversized), strength=0.5)
        elif kind == "oversized_side":
            fields.update(width=self.settings.max_side * 4, height=64)
        return gen.GenerateRequest(**fields)

    def call(self, kind: str) -> None:
        try:
            self._call(kind)
        except Exception as err:  # noqa: BLE001 - counted and shown, never lost in a pool thread
            self.record(f"{kind}_client_error_{type(err).__name__}")

    def _call(self, kind: str) -> None:
        from atelier.v1 import generation_pb2 as gen

        request = self.request(kind)
        if kind == "generate":
            try:
                for _ in self.stub.Generate(request, metadata=self.metadata, timeout=300):
                    pass
                self.record("generate_finished")
            except grpc.RpcError as err:
                self.record(f"generate_{err.code().name.lower()}")
            return
        started = time.perf_counter()
        try:
            handle = self.stub.Submit(request, metadata=self.metadata, timeout=60)
        except grpc.RpcError as err:
            self.record(f"{kind}_{err.code().name.lower()}", time.perf_counter() - started)
            return
        self.record(f"{kind}_accepted", time.perf_counter() - started, handle.job_id)
        try:
            if kind == "cancel":
                self.stub.CancelJob(gen.CancelJobRequest(job_id=handle.job_id), metadata=self.metadata, timeout=30)
            elif self.n % 5 == 0:
                self.stub.GetJob(gen.GetJobRequest(job_id=handle.job_id), metadata=self.metadata, timeout=30)
        except grpc.RpcError as err:
            self.record(f"followup_{err.code().name.lower()}")

    def run_for(self, seconds: float) -> None:
        """Issue calls at `rate` per second for `seconds` (open loop)."""
        kinds, weights = zip(*MIX, strict=True)
        start = time.perf_counter()
        i = 0
        while True:
            due = start + i / self.rate
            now = time.perf_counter()
            if due - start >= seconds:
                return
            if due > now:
                time.sleep(due - now)
            self.pool.submit(self.call, self.rng.choices(kinds, weights)[0])
            i += 1

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.channel.close()


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=20.0, help="length of the run (default 20)")
    p.add_argument("--quick", action="store_true", help="a few seconds in windows of 2 s (for tests)")
    p.add_argument("--window-seconds", type=float, help="length of a window (default 60; --quick 2)")
    p.add_argument("--warmup-windows", type=int, help="windows before memory is taken as the baseline "
                   "(default: a tenth of the run, at least 1)")
    p.add_argument("--rate", type=float, default=6.0, help="calls per second (default 6)")
    p.add_argument("--concurrency", type=int, default=4, help="worker threads (default 4, as `atelier up`)")
    p.add_argument("--repository", type=Path, help="model repository (default: the shipped one)")
    p.add_argument("--model", help="model name in --repository (default atelier-emoji)")
    p.add_argument("--redis-url", help="use this Redis (default: a free database of the local one, or a private one)")
    args = p.parse_args(argv)
    if args.quick:
        args.minutes = min(args.minutes, 0.2)
        args.window_seconds = args.window_seconds or 2.0
    args.window_seconds = args.window_seconds or 60.0
    args.windows = max(2, round(args.minutes * 60 / args.window_seconds))
    args.warmup_windows = args.warmup_windows or max(1, args.windows // 10)
    if args.warmup_windows >= args.windows:
        p.error("--warmup-windows must leave at least one window of the run")
    return args


def growth(baseline: float, end: float) -> dict[str, float]:
    return {"after_warmup_mib": round(baseline, 1), "end_mib": round(end, 1),
            "growth_pct": round((end - baseline) / baseline * 100.0, 2)}


def soak(args: argparse.Namespace, redis_url: str, folder: Path) -> dict[str, Any]:
    import redis

    from atelier_cli.up import spawn
    from clients import Client
    from services.common.embedded_redis import free_port
    from services.common.jobs import JobState
    from services.common.queues import QUEUES, queue_depth
    from services.common.settings import Settings
    from services.gateway.auth import add_key

    if args.repository:
        repository, model, source = args.repository, args.model or "atelier-emoji", str(args.repository)
    else:
        from bench._gateway_model import default_repository

        repository, model, source = default_repository(say)
    _, key = add_key(folder / "api_keys.json", "soak")
    settings = Settings.from_env({}, redis_url=redis_url, key_prefix="soak:", model_repository=repository,
                                 default_model=model, api_keys_file=folder / "api_keys.json",
                                 grpc_listen=f"127.0.0.1:{free_port()}", gateway_metrics_port=0, worker_metrics_port=0,
                                 **UNLIMITED)
    say(f"model {model} from {source}; {args.windows} windows of {args.window_seconds:g} s at {args.rate:g} calls/s")
    worker = spawn("worker", settings, folder / "worker.log", env={"ATELIER_WORKER_CONCURRENCY": str(args.concurrency)})
    gateway = spawn("gateway", settings, folder / "gateway.log")
    client = redis.Redis.from_url(redis_url)
    load = None
    try:
        with Client(settings.grpc_listen, key, timeout=2.0, retries=0) as probe:
            deadline = time.monotonic() + 180
            while True:
                for proc, name in ((worker, "worker"), (gateway, "gateway")):
                    if proc.poll() is not None:
                        raise RuntimeError(f"the {name} exited with {proc.returncode}; see {folder / (name + '.log')}")
                try:
                    if probe.health() == "SERVING":
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the stack was not SERVING within 180 s")
                time.sleep(0.25)
        load = Load(settings.grpc_listen, key, args.rate, settings)
        windows = []
        for w in range(args.windows):
            load.run_for(args.window_seconds)
            done = load.take_window()
            row = {
                "window": w + 1,
                "submits": len(done.submit_seconds),
                "p50_ms": round(pct(done.submit_seconds, 0.50) * 1000, 2),
                "p99_ms": round(pct(done.submit_seconds, 0.99) * 1000, 2),
                "answers": dict(sorted(done.answers.items())),
                "queue_depth": sum(queue_depth(client, q) for q in QUEUES),
                "gateway_rss_mib": round(rss_mib(gateway.pid), 1),
                "worker_rss_mib": round(rss_mib(worker.pid), 1),
            }
            windows.append(row)
            say(f"window {w + 1}/{args.windows}: {row['submits']} submits, p50 {row['p50_ms']} ms, p99 "
                f"{row['p99_ms']} ms, queue {row['queue_depth']}, gateway {row['gateway_rss_mib']} MiB, worker "
                f"{row['worker_rss_mib']} MiB, {row['answers']}")
        load.close()
        accepted = list(load.accepted)
        say(f"draining: {len(accepted)} accepted jobs must finish")
        states: dict[str, int] = {}
        deadline = time.monotonic() + max(120.0, args.window_seconds * 2)
        while True:
            pipe = client.pipeline(transaction=False)
            for job_id in accepted:
                pipe.hget(f"{settings.key_prefix}job:{job_id}", "state")
            found = [s.decode() if s else "missing" for s in pipe.execute()]
            unfinished = sum(s not in JobState.FINAL for s in found)
            if not unfinished or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        for s in found:
            states[s] = states.get(s, 0) + 1
    finally:
        if load is not None:
            load.close()
        for proc in (gateway, worker):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except Exception:  # noqa: BLE001 - a stuck child is killed
                    proc.kill()
        client.close()

    warm, after = windows[args.warmup_windows - 1], windows[args.warmup_windows:]
    p99s = [w["p99_ms"] for w in after if w["submits"]]
    memory = {"gateway": growth(warm["gateway_rss_mib"], windows[-1]["gateway_rss_mib"]),
              "worker": growth(warm["worker_rss_mib"], windows[-1]["worker_rss_mib"])}
    figures = {
        "model": f"{model} ({source})",
        "minutes": round(args.windows * args.window_seconds / 60, 2),
        "rate_per_second": args.rate,
        "mix": dict(MIX),
        "warmup_windows": args.warmup_windows,
        "windows": windows,
        "memory": memory,
        "memory_goal_met": all(m["growth_pct"] <= GROWTH_GOAL_PCT for m in memory.values()),
        "p99_ms_after_warmup": {"median": round(statistics.median(p99s), 2) if p99s else 0.0,
                                "max": max(p99s, default=0.0)},
        "jobs": {"accepted": len(accepted), "states": states, "lost": states.get("missing", 0) + unfinished},
    }
    say(f"memory after warm-up -> end: gateway {memory['gateway']['growth_pct']} %, worker "
        f"{memory['worker']['growth_pct']} % (goal <= {GROWTH_GOAL_PCT:g} %); p99 Submit per window after warm-up: "
        f"median {figures['p99_ms_after_warmup']['median']} ms, max {figures['p99_ms_after_warmup']['max']} ms; "
        f"jobs {figures['jobs']}")
    return figures


def main(argv: list[str] | None = None) -> int:
    from bench._redis import bench_redis

    args = parse(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="atelier-soak-") as tmp:
        if args.redis_url:
            figures = soak(args, args.redis_url, Path(tmp))
        else:
            with bench_redis("soak:") as url:
                figures = soak(args, url, Path(tmp))
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    report.finish("soak", figures)
    return 0 if figures["jobs"]["lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
