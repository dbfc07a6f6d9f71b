"""Submit load for bench.gateway: N concurrent asyncio SDK clients, bounded in jobs and time.

Runs in its own process (`python -m bench._gateway_load ...`, one JSON line on stdout), so the
clients' protobuf and asyncio work does not share a GIL with the in-process gateway it
measures. Each client has its own channel (its own HTTP/2 connection), like separate
game servers or ad pipelines would. Every Submit's prompt is new to the gateway (numbered from
`--first`, which the caller moves past each run's): the prompt check keeps the clauses it has
seen, and a run that repeated an earlier run's prompts would measure that cache, not the check.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time

from clients import AsyncClient
from clients.errors import AtelierError


class _Run:
    """Shared by the clients of one run: the start gun, the job budget, and what happened."""

    def __init__(self, clients: int, jobs: int, seconds: float, first: int = 0):
        self.clients, self.budget, self.seconds, self.first = clients, jobs, seconds, first
        self.connected = 0
        self.go = asyncio.Event()
        self.t0 = self.t1 = self.stop_at = 0.0
        self.accepted = 0
        self.refused: collections.Counter = collections.Counter()
        self.latencies: list[float] = []


async def _client(address: str, key: str, run: _Run, fields: dict) -> None:
    async with AsyncClient(address, key, timeout=30.0, retries=0) as client:
        await client.health()  # connect before the clock starts
        run.connected += 1
        if run.connected == run.clients:
            run.t0 = run.t1 = time.perf_counter()
            run.stop_at = run.t0 + run.seconds
            run.go.set()
        await run.go.wait()
        while run.budget > 0 and time.perf_counter() < run.stop_at:
            run.budget -= 1
            started = time.perf_counter()
            try:
                await client.submit(f"load test sprite {run.first + run.budget}", **fields)
                run.accepted += 1
                run.latencies.append(time.perf_counter() - started)
            except AtelierError as err:
                run.refused[type(err).__name__] += 1
            run.t1 = time.perf_counter()


async def load(address: str, key: str, clients: int, jobs: int, seconds: float, fields: dict,
               first: int = 0) -> dict:
    run = _Run(clients, jobs, seconds, first)
    await asyncio.gather(*(_client(address, key, run, fields) for _ in range(clients)))
    elapsed = run.t1 - run.t0
    lat = sorted(run.latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {"clients": clients, "accepted": run.accepted, "refused": dict(run.refused), "seconds": elapsed,
            "accepted_per_second": run.accepted / elapsed if elapsed > 0 else 0.0,
            "submit_p50_ms": pct(0.5), "submit_p99_ms": pct(0.99)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2000, help="stop after this many submissions in all")
    p.add_argument("--seconds", type=float, default=10.0, help="stop after this long")
    p.add_argument("--fields", default="{}", help="GenerateRequest fields as JSON (SDK keywords)")
    p.add_argument("--first", type=int, default=0, help="number of the first prompt (runs on one gateway: past "
                   "the last run's)")
    args = p.parse_args(argv)
    result = asyncio.run(load(args.address, args.key, args.clients, args.jobs, args.seconds, json.loads(args.fields),
                              args.first))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
