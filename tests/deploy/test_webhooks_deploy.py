"""Where the webhook dispatcher runs (docs/DEPLOY.md, "Webhooks"): its own process in Compose
and on Kubernetes, from the gateway's image, reading webhooks.json from the keys folder, scraped
on its metrics port; `atelier up` runs it too (tests/test_embedded_webhooks.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.common.settings import Settings
from services.common.webhooks import config

from .helpers import COMPOSE, DEFAULTS, DEPLOY, find, k8s_objects
from .test_compose import _env, interpolate


def test_compose_runs_the_dispatcher_from_the_gateway_image_beside_the_keys():
    services = interpolate(yaml.safe_load(COMPOSE.read_text()))["services"]
    hooks, gateway = services["webhooks"], services["gateway"]
    assert hooks["image"] == gateway["image"] and hooks["entrypoint"] == ["atelier", "webhooks", "run"]
    assert "profiles" not in hooks, "it starts with a plain `docker compose up`"
    assert hooks["volumes"] == gateway["volumes"], "the same keys folder: webhooks.json beside api_keys.json"
    settings = Settings.from_env({k: v for k, v in _env(hooks).items() if k.startswith("ATELIER_")})
    assert settings.webhooks_metrics_port == DEFAULTS.webhooks_metrics_port
    assert hooks["expose"] == [str(DEFAULTS.webhooks_metrics_port)]
    assert str(DEFAULTS.webhooks_metrics_port) in " ".join(hooks["healthcheck"]["test"])
    assert config.file_of(settings.webhooks_file, settings.api_keys_file) == Path("/etc/atelier/keys/webhooks.json")
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    sd = {j["job_name"]: j for j in prom["scrape_configs"]}["atelier-webhooks"]["dns_sd_configs"][0]
    assert sd["names"] == hooks["networks"]["default"]["aliases"] and sd["port"] == DEFAULTS.webhooks_metrics_port


def test_kubernetes_runs_the_dispatcher_with_the_settings_and_the_secret_folder(tmp_path):
    objects = k8s_objects()
    settings = Settings.from_env(find(objects, "ConfigMap", "atelier-settings")["data"])
    deployment = find(objects, "Deployment", "atelier-webhooks")
    gateway = find(objects, "Deployment", "atelier-gateway")["spec"]["template"]["spec"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["atelier", "webhooks", "run"]
    assert container["image"] == gateway["containers"][0]["image"]
    assert {"configMapRef": {"name": "atelier-settings"}} in container["envFrom"]
    port = int(next(e["value"] for e in container["env"] if e["name"] == "ATELIER_WEBHOOKS_METRICS_PORT"))
    assert port == DEFAULTS.webhooks_metrics_port == container["ports"][0]["containerPort"]
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    # webhooks.json comes from the keys Secret, mounted as a folder (a subPath would never see an edit)
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "atelier-api-keys"
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert "subPath" not in mount
    hooks_file = config.file_of(settings.webhooks_file, settings.api_keys_file)
    assert hooks_file == Path(mount["mountPath"]) / "webhooks.json"
    secret = find(objects, "Secret", "atelier-api-keys")["stringData"]
    (tmp_path / "webhooks.json").write_text(secret["webhooks.json"])
    assert config.read(tmp_path / "webhooks.json") == config.WebhooksFile(), "an empty, valid webhooks file"
    monitor = find(objects, "ServiceMonitor", "atelier-webhooks")
    service = find(objects, "Service", "atelier-webhooks")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]
