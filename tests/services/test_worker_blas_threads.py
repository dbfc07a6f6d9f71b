"""`atelier worker` gives numpy's BLAS one thread (services/common/blas.py, ONE_BLAS_THREAD): set
before numpy loads, so the worker CLI module must not load it, and a value in the environment wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import services.worker.cli as cli
assert "numpy" not in sys.modules, "the worker CLI loads numpy before it can set BLAS threads"
cli.one_blas_thread()
import numpy
from threadpoolctl import threadpool_info
print(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
"""


def blas_threads(probe: str = PROBE, **env: str) -> int:
    """What `probe` prints last: BLAS's threads, in an environment without BLAS variables but `env`."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                               "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.strip().splitlines()[-1])


def test_the_worker_gives_blas_one_thread_unless_told_otherwise():
    assert blas_threads() == 1
    assert blas_threads(OPENBLAS_NUM_THREADS="2") == 2
