"""`atelier gateway` runs the server from ATELIER_* settings and stops cleanly on SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from clients import Client
from services.common.embedded_redis import free_port

pytestmark = [pytest.mark.slow, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]


def test_atelier_gateway_serves_and_stops_on_sigterm(redis_url, keys, model_repo, tmp_path):
    port = free_port()
    env = dict(os.environ, ATELIER_REDIS_URL=redis_url, ATELIER_API_KEYS_FILE=str(keys.path),
               ATELIER_MODEL_REPOSITORY=str(model_repo), ATELIER_DEFAULT_MODEL="test-model",
               ATELIER_GATEWAY_METRICS_PORT="0", ATELIER_SHUTDOWN_GRACE_SECONDS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "atelier_cli", "gateway", "--listen", f"127.0.0.1:{port}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with Client(f"127.0.0.1:{port}", keys.alice, timeout=2) as c:
            deadline = time.monotonic() + 20
            while True:
                try:
                    models = c.list_models()
                    break
                except Exception:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.2)
            assert [m.name for m in models] == ["test-model"]
        proc.send_signal(signal.SIGTERM)
        # Read while waiting: a gateway whose log fills the pipe would otherwise block on a write.
        out, _ = proc.communicate(timeout=15)
        print(f"gateway log: {len(out)} characters; last lines:\n" + "\n".join(out.splitlines()[-15:]))
        assert proc.returncode == 0
        assert "gateway stopped" in out
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
