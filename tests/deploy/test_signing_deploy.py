"""Where the workers' signing key comes from (docs/DEPLOY.md, "Secrets"): a Compose secret and a
Kubernetes Secret, mounted into every worker, and the settings that name the files inside."""

from __future__ import annotations

import yaml

from services.common import signing_keys
from services.common.settings import Settings

from .helpers import COMPOSE, DEPLOY, find, k8s_objects
from .test_compose import _env, interpolate


def _worker_services() -> dict[str, dict]:
    base = interpolate(yaml.safe_load(COMPOSE.read_text()))
    override = interpolate(yaml.safe_load((DEPLOY / "compose" / "multi-gpu.yml").read_text()))
    services = {**base["services"], **override["services"]}
    return {n: s for n, s in services.items() if s.get("image", "").startswith("atelier-worker")}


def test_every_compose_worker_reads_the_key_and_chain_from_the_signing_secrets():
    base = interpolate(yaml.safe_load(COMPOSE.read_text()))
    secrets = base["secrets"]
    assert set(secrets) == {"signing-chain", "signing-key"}
    assert secrets["signing-chain"]["file"].endswith("/signing-chain.pem")
    assert secrets["signing-key"]["file"].endswith("/signing-key.pem")
    workers = _worker_services()
    assert len(workers) >= 3, sorted(workers)  # worker, worker-cpu and the per-GPU ones
    for name, service in workers.items():
        assert set(service["secrets"]) == {"signing-chain", "signing-key"}, name
        settings = Settings.from_env({k: v for k, v in _env(service).items() if k.startswith("ATELIER_")})
        assert str(settings.signing_cert_chain) == "/run/secrets/signing-chain", name
        assert str(settings.signing_key) == "/run/secrets/signing-key", name
    ignored = (DEPLOY / "compose" / "signing" / ".gitignore").read_text()
    assert "*.pem" in ignored.splitlines(), "a signing key is never committed"


def test_kubernetes_workers_mount_the_signing_secret_where_their_settings_point():
    objects = k8s_objects()
    secret = find(objects, "Secret", "atelier-signing")
    assert set(secret["stringData"]) == {signing_keys.CHAIN_FILE, signing_keys.KEY_FILE}
    pod = find(objects, "Deployment", "atelier-worker")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "atelier-signing")
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"]
    assert env["ATELIER_SIGNING_CERT_CHAIN"] == f"{mount['mountPath']}/{signing_keys.CHAIN_FILE}"
    assert env["ATELIER_SIGNING_KEY"] == f"{mount['mountPath']}/{signing_keys.KEY_FILE}"
