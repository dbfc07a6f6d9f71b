"""`pip install atelier` (no extra) is enough for the client SDK and the `atelier` command line
talking to a gateway: run in a fresh interpreter where every import package of a distribution
outside the base requirements (and what they require) is hidden, as in a bare install, the SDK
imports, `atelier --help` lists the client commands, a bad argument is refused, and a call to an
absent gateway fails as "unreachable", not with a missing module."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 120


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def base_closure() -> set[str]:
    """The base requirements of pyproject.toml and, from the installed metadata, all they require on
    this platform (their own extras left out, as pip leaves them out)."""
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo, seen = [_name(r) for r in base], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_name(req.name))
    return seen


def test_the_base_requirements_are_the_sdks():
    names = {_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert names == {"grpcio", "grpcio-health-checking", "grpcio-status", "protobuf", "googleapis-common-protos",
                     "tqdm"}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [r for r in extras["worker"] if "onnxruntime" in r] == ["onnxruntime>=1.20,<2"]
    assert any(r.startswith("onnxruntime-gpu") for r in extras["worker-gpu"])


PROBE = r'''
import importlib.abc, importlib.metadata, json, sys
at_start = set(sys.modules)  # site's own (.pth hooks), there before any project code
allowed = set(json.loads(sys.argv[1])) | {"atelier"}  # the project's own packages
owners = importlib.metadata.packages_distributions()
hidden = {top for top, dists in owners.items()
          if not any(d.lower().replace("_", "-") in allowed for d in dists)}

class Bare(importlib.abc.MetaPathFinder):
    """Hides what a bare `pip install atelier` would not have."""
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the base install)", name=name)
        return None

sys.meta_path.insert(0, Bare())
import clients, clients.aio, clients.client, clients.requests  # noqa: E401
from atelier_cli.main import main
codes = {
    "help": main(["--help"]),
    "bad": main(["generate", "a fox", "--steps", "-1"]),
    "unreachable": main(["models", "--gateway", "127.0.0.1:9", "--api-key", "atk_a_b", "--timeout", "2"]),
    "worker": main(["worker"]),
    "dataset": main(["dataset", "no-such-spec.json", "--out", "x"]),
}
loaded = sorted({m.partition(".")[0] for m in set(sys.modules) - at_start} & hidden)
print("RESULT " + json.dumps({"codes": codes, "loaded": loaded}))
'''


def test_the_sdk_and_client_commands_need_only_the_base_install():
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sorted(base_closure()))], cwd=ROOT,
                          capture_output=True, text=True, timeout=SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.rpartition("RESULT ")[2])
    assert result["loaded"] == []
    assert result["codes"] == {"help": 0, "bad": 2, "unreachable": 6, "worker": 2, "dataset": 2}, done.stderr[-3000:]
    for command in ("generate", "upscale", "jobs", "dataset", "models"):
        assert f"    {command} " in done.stdout
    assert "Traceback" not in done.stderr and "--steps: '-1'" in done.stderr
    assert "cannot reach the gateway" in done.stderr
    assert "no-such-spec.json: cannot read it" in done.stderr
    assert "atelier worker: needs the `worker` extra (missing module " in done.stderr
    assert "pip install 'atelier[worker]'" in done.stderr
