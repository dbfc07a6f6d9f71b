"""Put each known bug back, one at a time, into a copy of the repository and run the tests that
must catch it: `make known-bugs` (or `python -m tests.known_bugs.check [name ...]`).

Each bug is data: a file, the exact snippet of today's code, and the buggy text that replaces
it; never a line-numbered patch, so a bug whose code moved is reported as such rather than
applied somewhere else. For every bug the repository's tracked and unignored files are copied
to a temporary folder (big files are hard-linked), the one replacement is made, and its tests
run under a 60 s limit. A bug counts as caught when pytest reports a failure within the limit.
The same tests first run on an unchanged copy, which must pass, so a "caught" means the bug.

Exit status: 0 when every bug was caught; 1 when one was not, or when an original snippet is
no longer found exactly once (the code moved: update the snippet here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT_SECONDS = 60
LINK_ABOVE_BYTES = 1 << 20  # model files: hard-linked, never edited by a bug


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    file: str
    original: str
    buggy: str
    tests: tuple[str, ...]


BUGS = (
    Bug(
        "sorted-seeds",
        "seeds sorted inside a chunk: the image labelled seed 9 is seed 3's",
        "services/worker/stages.py",
        "    seeds = tuple(seed for _, _, seed in picks)\n",
        "    seeds = tuple(sorted(seed for _, _, seed in picks))\n",
        ("tests/services/test_seed_positions.py",),
    ),
    Bug(
        "append-ignores-attempt",
        "the attempt check removed from the store's event append",
        "services/common/store/attempts.py",
        '_APPEND = """\n'
        "if redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then return false end\n"
        "if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return false end\n",
        '_APPEND = """\n'
        "if redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then return false end\n",
        ("tests/services/test_stale_attempts.py",),
    ),
    Bug(
        "stops-swallowed",
        "check() and progress() in the sampling loop wrapped in try/except: pass",
        "services/worker/stages.py",
        "        reporter.check()\n"
        "        reporter.progress(done_before + (step.i + 1) * len(indices), steps_total, made)\n",
        "        try:\n"
        "            reporter.check()\n"
        "            reporter.progress(done_before + (step.i + 1) * len(indices), steps_total, made)\n"
        "        except Exception:\n"
        "            pass\n",
        ("tests/services/test_stops.py", "tests/services/test_worker_stops.py"),
    ),
    Bug(
        "cached-verify-rehash-skipped",
        "the verified-file cache hands out re-read bytes without hashing them",
        "repository/reader.py",
        "            if data is None and self._verified.get(name) == identity:\n",
        "            if name in self._verified:\n",
        ("tests/export/test_tampered_files.py",),
    ),
    Bug(
        "precision-recall-k-minus-1",
        "precision/recall with the (k-1)-th neighbour's radius instead of the k-th",
        "diffusion/metrics.py",
        "    precision = _coverage(fake, real, _knn_radii(real, k, batch), batch)\n"
        "    recall = _coverage(real, fake, _knn_radii(fake, k, batch), batch)\n",
        "    precision = _coverage(fake, real, _knn_radii(real, k - 1, batch), batch)\n"
        "    recall = _coverage(real, fake, _knn_radii(fake, k - 1, batch), batch)\n",
        ("tests/diffusion/test_metrics.py",),
    ),
)


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, check=True, capture_output=True, timeout=60).stdout
    return [p for p in out.decode().split("\0") if p]


def copy_repository(dest: Path) -> None:
    for rel in tracked_files():
        src, dst = ROOT / rel, dest / rel
        if src.is_symlink() or not src.is_file():
            continue  # deleted in the working tree but still in the index
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.stat().st_size > LINK_ABOVE_BYTES:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)


def apply(bug: Bug, copy: Path) -> str | None:
    """Put the bug into the copy; None when done, else why it could not be."""
    path = copy / bug.file
    text = path.read_text()
    found = text.count(bug.original)
    if found != 1:
        return (f"the original snippet is found {found} times in {bug.file} (expected once): "
                "the code moved; update the snippet in tests/known_bugs/check.py")
    path.unlink()  # never write through a hard link into the real repository
    path.write_text(text.replace(bug.original, bug.buggy))
    return None


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[str, float, str]:
    """(outcome, seconds, pytest's output); outcome: passed/failed/timeout/error."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-o", f"timeout={LIMIT_SECONDS}",
           *tests]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=LIMIT_SECONDS,
                              start_new_session=True)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        return "timeout", time.monotonic() - started, out
    seconds = time.monotonic() - started
    outcome = {0: "passed", 1: "failed"}.get(proc.returncode, "error")
    return outcome, seconds, proc.stdout + proc.stderr


def failed_tests(output: str) -> list[str]:
    """The test functions pytest's summary names as failed (parameters dropped)."""
    names = (line.split()[1] for line in output.splitlines() if line.startswith("FAILED "))
    return list(dict.fromkeys(n.split("[")[0].split("::", 1)[-1] for n in names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="bugs to check (default: all)")
    args = parser.parse_args(argv)
    bugs = [b for b in BUGS if not args.names or b.name in args.names]
    unknown = set(args.names) - {b.name for b in BUGS}
    if unknown:
        parser.error(f"no such bug: {', '.join(sorted(unknown))}")
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="atelier-known-bugs-") as tmp:
        baseline = Path(tmp) / "baseline"
        copy_repository(baseline)
        all_tests = tuple(dict.fromkeys(t for b in bugs for t in b.tests))
        outcome, seconds, tail = run_tests(baseline, all_tests)
        print(f"unchanged copy: {outcome} in {seconds:.1f} s ({' '.join(all_tests)})", flush=True)
        if outcome != "passed":
            print(tail[-3000:])
            print("the tests fail without any bug: fix them first", file=sys.stderr)
            return 1
        for bug in bugs:
            copy = Path(tmp) / bug.name
            copy_repository(copy)
            problem = apply(bug, copy)
            if problem:
                rows.append((bug, "NOT APPLIED: the code moved", 0.0, []))
                print(f"{bug.name}: {problem}", file=sys.stderr, flush=True)
                ok = False
                continue
            outcome, seconds, tail = run_tests(copy, bug.tests)
            caught = outcome == "failed"
            ok &= caught
            verdict = "caught" if caught else f"NOT CAUGHT ({outcome})"
            rows.append((bug, verdict, seconds, failed_tests(tail)))
            print(f"{bug.name}: {verdict} in {seconds:.1f} s", flush=True)
            if not caught:
                print(tail[-3000:], file=sys.stderr)
            shutil.rmtree(copy, ignore_errors=True)
    print()
    print("| bug | file | tests run | result | seconds | failing tests |")
    print("|---|---|---|---|---|---|")
    for bug, verdict, seconds, failing in rows:
        tests = ", ".join(f"`{t}`" for t in bug.tests)
        print(f"| {bug.what} | `{bug.file}` | {tests} | {verdict} | {seconds:.1f} | {', '.join(failing)} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
