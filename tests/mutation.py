"""`make mutation`: mutmut over the modules listed in pyproject.toml ([tool.mutmut]), and the score.

    python -m tests.mutation run [MUTANT_GLOB ...]   mutate, test, then print the table
    python -m tests.mutation report                  the table (and the survivors) from the last runs

The run gets a private redis-server: a mutant can kill its pytest process before the Redis
fixture lets go of its database lock (tests/redis_harness.py), and such a lock must not hold one
of the shared server's databases for hours. One mutant at a time (--max-children 1).
docs/TESTING.md ("Mutation testing") has the scores and what every survivor means.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from services.common.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = str(Path(sys.executable).with_name("mutmut"))
# mutmut's statuses that mean a test noticed the mutant ("timeout": a test's deadline fired).
DETECTED = {"killed", "timeout"}


def mutant_statuses() -> dict[str, str]:
    """mutant name -> status, for every mutant mutmut knows of."""
    out = subprocess.run([MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True)
    statuses = {}
    for line in out.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            statuses[name] = status
    return statuses


def module_of(mutant: str) -> str:
    # services.worker.watchdog.xǁHardLimitWatchdogǁstop__mutmut_2 -> services.worker.watchdog
    return mutant.split(".x", 1)[0]


def score_table(statuses: dict[str, str]) -> str:
    by_module: dict[str, Counter] = defaultdict(Counter)
    for name, status in statuses.items():
        by_module[module_of(name)][status] += 1
    rows = ["| module | mutants | killed | survived | no tests | not run | score |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    total: Counter = Counter()
    for module, counts in sorted(by_module.items()):
        rows.append(_row(module, counts))
        total.update(counts)
    rows.append(_row("**all**", total))
    return "\n".join(rows)


def _row(label: str, counts: Counter) -> str:
    run = sum(counts.values()) - counts["not checked"]
    detected = sum(counts[s] for s in DETECTED)
    score = f"{100 * detected / run:.1f} %" if run else "-"
    return (f"| {label} | {sum(counts.values())} | {detected} | {counts['survived']} | {counts['no tests']} "
            f"| {counts['not checked']} | {score} |")


def report() -> None:
    statuses = mutant_statuses()
    print(score_table(statuses))
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, status in statuses.items():
        if status not in DETECTED and status != "not checked":
            function, _, number = name.rpartition("__mutmut_")
            survivors[function].append(number if status == "survived" else f"{number} ({status})")
    if survivors:
        print(f"\n{sum(map(len, survivors.values()))} not killed, by function "
              "(`.venv/bin/mutmut show FUNCTION__mutmut_N` shows the change):")
        for function, numbers in sorted(survivors.items()):
            readable = function.replace(".xǁ", ".").replace("ǁ", ".").replace(".x_", ".")
            print(f"  {readable}: {', '.join(sorted(numbers, key=lambda n: int(n.split()[0])))}")


def run(mutant_globs: list[str]) -> int:
    started = time.monotonic()
    with EmbeddedRedis() as url:
        env = dict(os.environ, ATELIER_TEST_REDIS="system", ATELIER_TEST_REDIS_URL=url.rsplit("/", 1)[0])
        code = subprocess.run([MUTMUT, "run", "--max-children", "1", *mutant_globs], cwd=ROOT, env=env).returncode
    print(f"\nmutmut run took {time.monotonic() - started:.0f} s (exit {code})\n")
    report()
    return code


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        return run(argv[1:])
    if argv == ["report"]:
        report()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
