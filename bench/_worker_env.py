"""Run an in-process benchmark in the environment `atelier worker` gives its process.

The worker sets numpy's BLAS to one thread before numpy loads (services/common/blas.py,
ONE_BLAS_THREAD); a benchmark that runs the worker's job path in its own process must do the
same, or it measures BLAS threads that no worker has. numpy is loaded by the time a benchmark
parses its arguments, so the benchmark starts itself again with the variables set.
"""

from __future__ import annotations

import os
import sys


def as_a_worker(module: str, argv: list[str] | None) -> None:
    """Return at once where the worker's variables are set; else replace this process by
    `python -m module argv...` with them set (values already in the environment win)."""
    from services.common.blas import ONE_BLAS_THREAD

    if all(name in os.environ for name in ONE_BLAS_THREAD):
        return
    print(f"re-running with the worker's {ONE_BLAS_THREAD}", flush=True)
    args = sys.argv[1:] if argv is None else list(argv)
    os.execve(sys.executable, [sys.executable, "-m", module, *args], {**ONE_BLAS_THREAD, **os.environ})


def blas_environment() -> dict[str, str | None]:
    from services.common.blas import ONE_BLAS_THREAD

    return {name: os.environ.get(name) for name in ONE_BLAS_THREAD}
