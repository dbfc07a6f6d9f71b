"""Real processes for the chaos tests: a private redis-server with AOF (as compose and
Kubernetes run it) that a test can stop and restart on the same port and data, worker
processes (`atelier worker`) started with given Settings, and what a test reads back from
the job store to judge the outcome (images per index, finished events)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

from atelier_cli.up import spawn
from services.common import readiness
from services.common.embedded_redis import free_port, redis_server_binary
from services.common.events import EventKind
from services.common.settings import Settings
from services.common.store import JobStore
from tests.clients.real_stack import pixels


class AofRedis:
    """redis-server with `--appendonly yes --appendfsync everysec` on a fixed port and folder,
    so `stop()` then `start()` is a Redis restart that keeps its data."""

    def __init__(self, directory: Path | None = None):
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="atelier-aof-")
        self.directory = Path(directory or self._tmp.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url)
        try:
            while True:
                try:
                    if client.ping():
                        return self.url
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits, as on a rolling restart."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


class Processes:
    """`atelier worker` and `atelier gateway` processes with the given Settings; every one is
    killed at close()."""

    def __init__(self, settings: Settings, log_dir: Path):
        self.settings, self.log_dir = settings, log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, concurrency: int = 2, wait: bool = True, **env: str) -> subprocess.Popen:
        n = len(self.procs)
        env = {"OMP_NUM_THREADS": "1", **env, "ATELIER_WORKER_CONCURRENCY": str(concurrency)}
        proc = spawn("worker", self.settings, self.log_dir / f"worker{n}.log",
                     "--hostname", f"w{n}-{os.getpid()}@chaos", env=env)
        self.procs.append(proc)
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen, timeout: float = 60.0) -> None:
        client = redis.Redis.from_url(self.settings.redis_url)
        deadline = time.monotonic() + timeout
        try:
            while not any(w.worker.endswith(f":{proc.pid}") and w.models
                          for w in readiness.workers(client, self.settings.key_prefix)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {proc.pid} did not become ready:\n{self.logs()}")
                time.sleep(0.1)
        finally:
            client.close()

    def start_gateway(self, port: int) -> subprocess.Popen:
        """`atelier gateway` on 127.0.0.1:`port`, returned once its health check says SERVING."""
        from clients import Client

        n = len(self.procs)
        proc = spawn("gateway", self.settings, self.log_dir / f"gateway{n}.log",
                     env={"ATELIER_GRPC_LISTEN": f"127.0.0.1:{port}"})
        self.procs.append(proc)
        with Client(f"127.0.0.1:{port}", "", timeout=1.0, retries=0) as client:
            def serving() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"gateway exited with {proc.returncode}:\n{self.logs()}")
                try:
                    return client.health() == "SERVING"
                except Exception:  # noqa: BLE001 - not listening yet
                    return False
            wait_until(serving, 60, "the gateway's health SERVING", interval=0.2)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                         for p in sorted(self.log_dir.glob("*.log")))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def images(store: JobStore, job_id: str) -> dict[int, bytes]:
    return {int(k): v for k, v in store.client.hgetall(store.artifacts_key(job_id)).items()}


def pictures(store: JobStore, job_id: str) -> dict[int, bytes]:
    """The job's images as their decoded RGBA pixels: two deliveries of the same image differ in
    their files' bytes (each carries a C2PA manifest signed anew), never in their pixels."""
    return {i: pixels(data).tobytes() for i, data in images(store, job_id).items()}


def outcome(store: JobStore, job_id: str) -> dict:
    """What a client could see of a job: its state, how often each image index was delivered,
    its finished events and the attempts that started it."""
    events = store.read_events(job_id)
    return {
        "state": store.get(job_id).state,
        "deliveries": Counter(e.data["index"] for e in events if e.kind == EventKind.ARTIFACT),
        "finished": sum(e.kind == EventKind.FINISHED for e in events),
        "attempts": [e.data["attempt"] for e in events if e.kind == EventKind.STARTED],
    }


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def stack_settings(redis_url: str, models: Path, state: Path, **overrides) -> tuple[Settings, str]:
    """Settings for gateways and workers of one test stack, and an API key of tenant `chaos`."""
    from services.gateway.auth import add_key

    keys = state / "api_keys.json"
    if not keys.exists():
        state.mkdir(parents=True, exist_ok=True)
    _, key = add_key(keys, "chaos")
    settings = Settings.from_env({}, redis_url=redis_url, model_repository=models, default_model="tiny",
                                 api_keys_file=keys, grpc_listen="127.0.0.1:0", gateway_metrics_port=0,
                                 worker_metrics_port=0, **overrides)
    return settings, key
