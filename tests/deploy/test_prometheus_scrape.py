"""A real Prometheus scrapes a real gateway and a real worker while they run jobs.

The stack: an `atelier worker` process (Celery, thread pool, the numpy toy model of
tests/services/toy_runtime.py), the gateway in-process on a loopback port with its real
Celery enqueue, and Debian's `prometheus` server on a free loopback port with a temporary
config (1 s scrapes) that loads the repository's rule files. Jobs go in through the Python
client; then PromQL through Prometheus' HTTP API must return them, every dashboard query
must evaluate, and every series the dashboard and the rules read must be on a live /metrics
page.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import redis
import requests
import yaml

from services.common import readiness
from services.common.embedded_redis import free_port
from services.common.settings import Settings
from tests.clients.deadlines import within

from .helpers import PROMETHEUS, ROOT, exposed_series, metric_names, tool
from .test_prometheus import BUILTIN, dashboard_exprs, recorded_names, rule_exprs, webhooks_exposition

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PREFIX = "deploytest:"
MODEL = "toy"  # tests/services/toy_runtime.py serves it; write_model gives the gateway its manifest
HOSTNAME = "atelier-deploy-test"
WORKER_NODE = f"celery@{HOSTNAME}"  # Celery's default node name in a container whose $HOSTNAME this is


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - loopback only
        return reply.read()


class Stack:
    """Worker process, in-process gateway and Prometheus server; `close()` ends all three."""

    def __init__(self, redis_url: str, tmp: Path):
        from services.gateway.auth import add_key
        from tests.gateway.conftest import write_model

        self.tmp = tmp
        self.client = redis.Redis.from_url(redis_url)
        self.worker = self.gateway = self.prometheus = None
        repo = tmp / "models"
        write_model(repo, name=MODEL, version="1")
        _, self.api_key = add_key(tmp / "keys.json", "studio")
        self.worker_port, self.gateway_port, self.prom_port = free_port(), free_port(), free_port()
        self.env = {
            "ATELIER_REDIS_URL": redis_url,
            "ATELIER_KEY_PREFIX": PREFIX,
            "ATELIER_MODEL_REPOSITORY": str(repo),
            "ATELIER_DEFAULT_MODEL": MODEL,
            "ATELIER_API_KEYS_FILE": str(tmp / "keys.json"),
        }

    # --- the three processes

    def start_worker(self) -> None:
        env = dict(
            os.environ,
            **self.env,
            ATELIER_RUNTIME_LOADER="tests.services.toy_runtime:load",
            ATELIER_WORKER_METRICS_PORT=str(self.worker_port),
            ATELIER_BATCH_WAIT_MS="5",
            ATELIER_LOG_LEVEL="INFO",
            OMP_NUM_THREADS="1",
        )
        log = open(self.tmp / "worker.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "atelier_cli",
                "worker",
                "--concurrency",
                "2",
                "--hostname",
                WORKER_NODE,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not readiness.workers(self.client, PREFIX):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + self.log("worker.log"))
            time.sleep(0.1)

    def start_gateway(self) -> None:
        from services.gateway.server import serve

        settings = Settings.from_env(
            self.env, grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", gateway_metrics_port=self.gateway_port
        )
        self.gateway = serve(settings, health_interval=0.2, poll_seconds=0.2)

    def start_prometheus(self) -> None:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in sorted((PROMETHEUS / "rules").glob("*.yml"))],
            "scrape_configs": [
                {
                    "job_name": "atelier-gateway",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.gateway_port}"]}],
                },
                {
                    "job_name": "atelier-worker",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.worker_port}"]}],
                },
            ],
        }
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(self.tmp / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.prometheus = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={self.tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"http://127.0.0.1:{self.prom_port}/-/ready", timeout=1)
                return
            except OSError:
                if self.prometheus.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("prometheus did not start:\n" + self.log("prometheus.log")) from None
                time.sleep(0.2)

    def log(self, name: str) -> str:
        return (self.tmp / name).read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.stop(grace=0.5)
        for proc in (self.prometheus, self.worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self.client.close()

    # --- Prometheus' HTTP API

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        body = json.loads(_get(f"http://127.0.0.1:{self.prom_port}/api/v1/{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def wait_for(self, expr: str, minimum: float, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            value = sum(float(r["value"][1]) for r in result)
            if result and value >= minimum:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{expr} = {value if result else 'no data'} after {timeout} s (want {minimum})"
                )
            time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_instance):
    redis_url = redis_instance.url
    redis.Redis.from_url(redis_url).flushdb()
    s = Stack(redis_url, tmp_path_factory.mktemp("scrape"))
    try:
        s.start_worker()
        s.start_gateway()
        s.start_prometheus()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def ran_jobs(stack) -> dict[str, int]:
    """Two interactive jobs, one batch job and one invalid submission, through the gateway."""
    from clients.client import Client
    from clients.errors import AtelierError
    from services.gateway import metrics as gateway_metrics

    # The gateway runs in this process: its counters already hold what earlier tests submitted.
    stack.submitted_before = sum(
        s.value for m in gateway_metrics.SUBMITTED.collect() for s in m.samples if s.name.endswith("_total")
    )
    finished = {"interactive": 0, "batch": 0}
    with Client(stack.gateway.address, stack.api_key) as client:
        deadline = time.monotonic() + 20
        while client.health() != "SERVING":
            assert time.monotonic() < deadline, "gateway never became SERVING"
            time.sleep(0.2)
        for queue in ("interactive", "interactive", "batch"):
            events = within(
                client.generate(
                    "a blue gem", style="google", seeds=[7], steps=4, width=32, height=32, priority=queue
                ),
                60,
            )
            assert events[-1].HasField("finished")
            finished[queue] += 1
        with pytest.raises(AtelierError):
            client.submit("a blue gem", width=7)
    # And one call of the HTTP/JSON edge, whose calls the dashboard shows beside the RPCs.
    models = requests.get(f"{stack.gateway.http_address}/v1/models", timeout=10,
                          headers={"Authorization": f"Bearer {stack.api_key}"})
    assert models.status_code == 200
    return finished


def test_prometheus_scrapes_both_services(stack, ran_jobs):
    deadline = time.monotonic() + 20
    while True:
        targets = stack.api("targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if health == {"atelier-gateway": "up", "atelier-worker": "up"}:
            break
        assert time.monotonic() < deadline, f"targets not up: {targets}"
        time.sleep(0.5)
    assert stack.wait_for('sum(up{job=~"atelier-gateway|atelier-worker"})', 2) == 2


def test_promql_returns_the_jobs_that_ran(stack, ran_jobs):
    total = sum(ran_jobs.values())
    assert stack.wait_for('sum(atelier_jobs_total{outcome="succeeded"})', total) == total
    submitted = stack.submitted_before + total
    assert stack.wait_for("sum(atelier_jobs_submitted_total)", submitted) == submitted
    by_queue = {
        r["metric"]["queue"]: float(r["value"][1])
        for r in stack.query("sum by (queue) (atelier_job_latency_seconds_count)")
    }
    assert by_queue == {"interactive": ran_jobs["interactive"], "batch": ran_jobs["batch"]}
    stack.wait_for('sum(atelier_grpc_requests_total{method="Generation/Submit", code="INVALID_ARGUMENT"})', 1)
    stack.wait_for("sum(atelier_sampler_steps_total)", 4 * total)
    stack.wait_for("sum(atelier_denoiser_batch_rows_count)", 1)
    depth = {r["metric"]["queue"] for r in stack.query("atelier_queue_depth")}
    assert depth == {"interactive", "batch"}


# Dashboard queries that may be empty after this run: an increase() over a window longer than
# the run, and series that only errors or rejections produce.
MAY_BE_EMPTY = {
    "Job outcomes over the range [A]",
    "RPC server-error ratio and duration [A]",
    "Content policy decisions [A]",  # only a refused prompt or a dropped image makes the series
    # The webhook dispatcher is a process of its own, not in this stack; its series are checked
    # against its exposition below and by tests/test_embedded_webhooks.py.
    "Webhook deliveries and failed attempts [A]",
    "Webhook deliveries and failed attempts [B]",
    "Webhook deliveries pending and dead letters [A]",
    "Webhook deliveries pending and dead letters [B]",
}
# Known gaps in the code, each with its own strict xfail test below (it fails once fixed, so
# the entry gets removed).
KNOWN_GAPS: set[str] = set()


def _empty_dashboard_queries(stack) -> list[str]:
    empty = []
    for name, expr in dashboard_exprs().items():
        expr = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
        if not stack.query(expr):
            empty.append(name)
    return empty


def test_every_dashboard_query_evaluates(stack, ran_jobs):
    stack.wait_for('sum(atelier_jobs_total{outcome="succeeded"})', sum(ran_jobs.values()))
    time.sleep(2)  # a few more scrapes, so rates over the window have two samples after the jobs
    unexpected = set(_empty_dashboard_queries(stack)) - MAY_BE_EMPTY - KNOWN_GAPS
    assert not unexpected, f"dashboard queries with no data after jobs ran: {sorted(unexpected)}"


def test_worker_counts_images(stack, ran_jobs):
    stack.wait_for("sum(atelier_images_total)", sum(ran_jobs.values()), timeout=5)


def test_rules_load_and_evaluate_on_the_real_server(stack, ran_jobs):
    deadline = time.monotonic() + 15
    while True:
        groups = stack.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        alerts = [r for r in rules if r["type"] == "alerting"]
        if alerts and all(r["health"] == "ok" for r in alerts):
            break
        assert time.monotonic() < deadline, f"alert rules not evaluated cleanly: {alerts}"
        time.sleep(0.5)
    assert {r["name"] for r in rules} == set(rule_exprs())
    assert not [r for r in rules if r["health"] == "err"], [r for r in rules if r["health"] == "err"]
    firing = {a["labels"]["alertname"] for a in stack.api("alerts")["alerts"]}
    assert not firing & {"AtelierNoReadyWorkers", "AtelierGatewayDown"}, firing


def test_every_series_used_is_on_a_live_metrics_page(stack, ran_jobs):
    exported = {}
    for port in (stack.gateway_port, stack.worker_port):
        exported |= exposed_series(_get(f"http://127.0.0.1:{port}/metrics").decode())
    exported |= exposed_series(webhooks_exposition())  # the dispatcher's, a process not in this stack
    known = set(exported) | recorded_names() | BUILTIN
    missing = {
        name: sorted(metric_names(expr) - known)
        for name, expr in {**rule_exprs(), **dashboard_exprs()}.items()
        if metric_names(expr) - known
    }
    assert not missing, f"series no live endpoint exports: {missing}"


def test_container_health_checks_pass_against_the_real_services(stack, ran_jobs):
    """The images' HEALTHCHECK commands, run as the containers run them, against live services."""
    from .test_docker import DOCKERFILES, exec_form, parse, stages

    checks = {}
    for path in DOCKERFILES:
        health = [i.args for i in stages(parse(path))[-1] if i.op == "HEALTHCHECK"][0]
        if health != "NONE":
            checks[path.name] = exec_form(health.split("CMD", 1)[1].strip())
    gateway_port = stack.gateway.address.rsplit(":", 1)[1]
    env = dict(os.environ, **stack.env, HOSTNAME=HOSTNAME, ATELIER_GRPC_LISTEN=f"0.0.0.0:{gateway_port}")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # celery, as in the image
    for name, argv in checks.items():
        if argv[0] == "grpc-health-check":  # installed under that name in the image
            argv = [sys.executable, str(ROOT / "deploy" / "docker" / "grpc_health_check.py"), *argv[1:]]
        result = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"{name}: {argv}\n{result.stdout}{result.stderr}"
