"""`atelier gateway` and `atelier up` give numpy's BLAS one thread before numpy loads
(services/common/blas.py): the prompt check's products from many Submit threads otherwise wait
on, and spin in, BLAS's pool threads. A value in the environment wins."""

from __future__ import annotations

import subprocess
import sys

from tests.services.test_worker_blas_threads import ROOT, blas_threads

# The server is replaced by one that reports BLAS's threads once numpy is loaded: what is under
# test is what the command sets before it starts the server.
PROBE = """
import argparse, sys, types
import services.gateway.cli as cli
assert "numpy" not in sys.modules, "the gateway CLI loads numpy before it can set BLAS threads"

def serve(settings):
    import numpy
    from threadpoolctl import threadpool_info
    print(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
    raise SystemExit(0)

server = types.ModuleType("services.gateway.server")
server.serve = serve
sys.modules["services.gateway.server"] = server
cli._serve(argparse.Namespace(listen=None))
"""


def test_the_gateway_gives_blas_one_thread_unless_told_otherwise():
    assert blas_threads(PROBE) == 1
    assert blas_threads(PROBE, OPENBLAS_NUM_THREADS="2") == 2


def test_atelier_up_can_set_it_before_numpy_loads():
    proc = subprocess.run([sys.executable, "-c", "import sys, atelier_cli.up; print('numpy' in sys.modules)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
