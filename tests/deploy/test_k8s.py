"""deploy/k8s: every manifest valid against Kubernetes' schemas (kubernetes-validate), the custom
resources (KEDA, Prometheus operator) checked structurally, and the pieces consistent with each
other and with the code: selectors, ports, probes, settings, time limits, queue names."""

from __future__ import annotations

import shutil

import pytest
import yaml

from services.common.jobs import Priority
from services.common.queues import QUEUES
from services.common.settings import Settings, SettingsError

from .helpers import DEFAULTS, K8S, SETTING_NAMES, find, k8s_objects, load_yaml_docs, port_of, run

CORE_KINDS = {
    "Namespace",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "PersistentVolumeClaim",
}
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return k8s_objects()


@pytest.fixture(scope="module")
def settings(objects) -> Settings:
    return Settings.from_env(find(objects, "ConfigMap", "atelier-settings")["data"])


def _containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


def _port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in named, f"{container['name']} has no port named {port}"
    return named[port]


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == "atelier"


def test_every_object_is_a_known_kind_in_the_namespace(objects):
    for obj in objects:
        kind = obj["kind"]
        assert kind in CORE_KINDS or (obj["apiVersion"], kind) in CUSTOM, (
            f"unexpected {obj['apiVersion']}/{kind}"
        )
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == "atelier", f"{kind}/{obj['metadata']['name']}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "atelier"


def test_core_objects_valid_against_the_kubernetes_schemas(objects):
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: run `make deploy-tools`", pytrace=False)
    version = kubernetes_validate.latest_version()
    for obj in objects:
        if obj["kind"] in CORE_KINDS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_kustomize_builds():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (optional: the manifests are also checked one by one)")
    result = run(kubectl, "kustomize", str(K8S))
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(built) == len(k8s_objects())


def test_selectors_match_pod_labels(objects):
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    for obj in workloads:
        selector = obj["spec"]["selector"]["matchLabels"]
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), obj["metadata"]["name"]
    for svc in (o for o in objects if o["kind"] == "Service"):
        selector = svc["spec"]["selector"].items()
        matches = [w for w in workloads if selector <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, f"Service {svc['metadata']['name']} selects {len(matches)} workloads"
        container = _containers(matches[0])[0]
        for port in svc["spec"]["ports"]:
            _port_number(container, port["targetPort"])  # every targetPort is a real container port
    for pdb in (o for o in objects if o["kind"] == "PodDisruptionBudget"):
        target = find(objects, "Deployment", pdb["metadata"]["name"])
        assert pdb["spec"]["selector"]["matchLabels"] == target["spec"]["selector"]["matchLabels"]
    hpa = find(objects, "HorizontalPodAutoscaler", "atelier-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "atelier-gateway",
    }
    assert hpa["spec"]["minReplicas"] >= 2, "one gateway down must not take the service down"
    gateway_pdb = find(objects, "PodDisruptionBudget", "atelier-gateway")
    assert gateway_pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a PDB that allows no drain"
    redis = find(objects, "StatefulSet", "atelier-redis")
    assert redis["spec"]["serviceName"] == "atelier-redis"
    assert find(objects, "Service", "atelier-redis")["spec"]["clusterIP"] == "None"


def test_configmap_keys_are_settings_and_pass_their_checks(objects):
    data = find(objects, "ConfigMap", "atelier-settings")["data"]
    assert set(data) <= SETTING_NAMES, f"not settings: {sorted(set(data) - SETTING_NAMES)}"
    try:
        settings = Settings.from_env(data)
    except SettingsError as exc:
        pytest.fail(f"configmap.yaml: {exc}")
    assert settings.task_soft_time_limit < settings.task_time_limit < settings.visibility_timeout
    assert settings.grpc_listen.startswith("0.0.0.0:")
    assert settings.redis_url.startswith("redis://atelier-redis:6379/")


def test_pods_read_the_configmap_and_the_keys_secret(objects, settings):
    secret = find(objects, "Secret", "atelier-api-keys")
    key_name = settings.api_keys_file.name
    assert key_name in secret["stringData"]
    for name in ("atelier-gateway", "atelier-worker"):
        container = _containers(find(objects, "Deployment", name))[0]
        assert {"configMapRef": {"name": "atelier-settings"}} in container["envFrom"]
    gateway = find(objects, "Deployment", "atelier-gateway")["spec"]["template"]["spec"]
    volume = next(v for v in gateway["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "atelier-api-keys"
    mount = next(m for m in gateway["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert "subPath" not in mount, "a subPath mount never sees a rotated Secret"
    assert f"{mount['mountPath']}/{key_name}" == str(settings.api_keys_file)


def test_gateway_probes_and_ports_match_the_settings(objects, settings):
    container = _containers(find(objects, "Deployment", "atelier-gateway"))[0]
    grpc_port = port_of(settings.grpc_listen)
    assert grpc_port == port_of(DEFAULTS.grpc_listen)
    assert _port_number(container, "grpc") == grpc_port
    assert (
        _port_number(container, "metrics") == settings.gateway_metrics_port == DEFAULTS.gateway_metrics_port
    )
    readiness = container["readinessProbe"]
    assert readiness["grpc"] == {"port": grpc_port, "service": ""}, "native gRPC readiness probe"
    from services.gateway.health import LIVENESS

    liveness = container["livenessProbe"]["grpc"]
    assert liveness == {"port": grpc_port, "service": LIVENESS}, "liveness must not follow Redis or workers"
    spec = find(objects, "Deployment", "atelier-gateway")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > settings.shutdown_grace_seconds
    service = find(objects, "Service", "atelier-gateway")
    http_port = port_of(settings.http_listen)
    assert settings.http_listen.startswith("0.0.0.0:") and _port_number(container, "http") == http_port
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": grpc_port,
        "http": http_port,
        "metrics": settings.gateway_metrics_port,
    }


def test_worker_requests_a_gpu_and_outlives_a_job(objects, settings):
    deployment = find(objects, "Deployment", "atelier-worker")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["terminationGracePeriodSeconds"] > settings.task_time_limit
    assert _port_number(container, "metrics") == settings.worker_metrics_port == DEFAULTS.worker_metrics_port
    ping = " ".join(container["livenessProbe"]["exec"]["command"])
    assert "services.worker.celery_app inspect ping" in ping
    for probe in ("startupProbe", "readinessProbe"):
        assert _port_number(container, container[probe]["httpGet"]["port"]) == settings.worker_metrics_port
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0, (
        "a rollout never needs a spare GPU"
    )


def test_workers_write_datasets_to_one_shared_claim(objects, settings):
    pod = find(objects, "Deployment", "atelier-worker")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == str(settings.dataset_dir))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = find(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every worker pod writes shards to it"
    assert {"secretRef": {"name": "atelier-dataset-s3", "optional": True}} in pod["containers"][0]["envFrom"]


def test_pods_run_as_non_root_with_a_read_only_root(objects):
    for obj in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]


def test_redis_persists_and_never_evicts(objects):
    redis = find(objects, "StatefulSet", "atelier-redis")
    args = _containers(redis)[0]["args"]
    flags = dict(zip(args[0::2], args[1::2], strict=False))
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] == "everysec"
    assert flags["--maxmemory-policy"] == "noeviction"
    claims = redis["spec"]["volumeClaimTemplates"]
    mounts = _containers(redis)[0]["volumeMounts"]
    assert any(
        m["name"] == claims[0]["metadata"]["name"] and m["mountPath"] == flags["--dir"] for m in mounts
    )


def test_keda_scales_workers_on_the_celery_queues(objects, settings):
    scaled = find(objects, "ScaledObject", "atelier-worker")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "atelier-worker"
    find(objects, "Deployment", spec["scaleTargetRef"]["name"])
    # Zero workers would leave the gateway NOT_SERVING, so no job could ever scale them up.
    assert spec["minReplicaCount"] >= 1
    assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert sorted(t["metadata"]["listName"] for t in triggers) == sorted(QUEUES) == sorted(Priority.ALL)
    redis_host, redis_port = settings.redis_url.removeprefix("redis://").split("/")[0].split(":")
    db = settings.redis_url.rsplit("/", 1)[1]
    for trigger in triggers:
        meta = trigger["metadata"]
        # KEDA's operator runs in its own namespace: the address must be fully qualified.
        assert meta["address"] == f"{redis_host}.atelier.svc.cluster.local:{redis_port}"
        assert meta["databaseIndex"] == db
        assert int(meta["listLength"]) > 0


def test_service_monitors_scrape_the_metrics_ports(objects):
    for name in ("atelier-gateway", "atelier-worker"):
        monitor = find(objects, "ServiceMonitor", name)
        service = find(objects, "Service", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["atelier"]
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
        assert "metrics" in ports
        # The job label is the Service name: the rules' job="atelier-gateway"/"atelier-worker".
        assert "jobLabel" not in monitor["spec"]


def test_prometheusrule_matches_the_rule_files():
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_prometheusrule", K8S / "render_prometheusrule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (K8S / "prometheusrule.yaml").read_text()
    assert committed == module.render(), (
        "run `python deploy/k8s/render_prometheusrule.py` and commit the result"
    )
    rule = load_yaml_docs(K8S / "prometheusrule.yaml")[0]
    assert {g["name"] for g in rule["spec"]["groups"]} == {"atelier.recording", "atelier.alerts"}
