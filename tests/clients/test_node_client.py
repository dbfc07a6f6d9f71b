"""A client written in another language from the .proto alone: Node.js with @grpc/grpc-js,
end to end against the real stack (real gateway, real worker process, the shipped model).

Needs `node` and `npm`; the packages are installed (pinned, tests/clients/node/package.json)
on first run and the test is skipped where neither they nor a registry are available.
"""

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format

from clients import Client, build_request
from tests.clients.deadlines import within
from tests.clients.real_stack import EMOJI_JOB, JOB_SECONDS, assert_emoji, pixels

pytestmark = [pytest.mark.slow, pytest.mark.redis]

NODE_DIR = Path(__file__).resolve().parent / "node"


def _node_ready() -> bool:
    if not shutil.which("node"):
        return False
    # Test processes side by side (pytest-xdist workers, two runs) install one after the other: two
    # npm installs into one node_modules can leave it half-written.
    with open(NODE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
            return True
        if not shutil.which("npm"):
            return False
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                              timeout=300)
        return done.returncode == 0


def test_node_client_gets_the_shipped_models_image(real_stack, tmp_path):
    if not _node_ready():
        pytest.skip("node or the @grpc/grpc-js packages are not available")
    request = build_request(**EMOJI_JOB, seeds=[7])
    out = tmp_path / "cat.png"
    done = subprocess.run(
        ["node", str(NODE_DIR / "generate.js"), real_stack.address, real_stack.api_key, str(out),
         json.dumps(json_format.MessageToDict(request, preserving_proto_field_name=True))],
        capture_output=True, text=True, timeout=JOB_SECONDS,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.split()
    assert lines[:3] == ["style", "twemoji", "queued"] and "artifact" in lines and lines[-1] == "JOB_STATE_SUCCEEDED"
    assert_emoji(out.read_bytes(), real_stack.manifest)
    artifact = json.loads(out.with_name(out.name + ".json").read_text())
    provenance = artifact["provenance"]
    assert artifact["seed"] == provenance["seed"] == "7"
    assert (provenance["model_name"], provenance["model_version"], provenance["model_sha256"]) == \
        (real_stack.model, real_stack.version, real_stack.model_sha256)
    assert (provenance["prompt"], provenance["style"], provenance["sampler"], provenance["steps"]) == \
        (EMOJI_JOB["prompt"], EMOJI_JOB["style"], "SAMPLER_EULER", EMOJI_JOB["steps"])
    # The same request from the Python SDK: the same seed gives the same image whichever client asks.
    with Client(real_stack.address, real_stack.api_key) as c:
        events = within(c.generate(request=request), JOB_SECONDS)
    (python_image,) = [e.artifact.data for e in events if e.HasField("artifact")]
    assert np.array_equal(pixels(out.read_bytes()), pixels(python_image))  # each delivery's credentials differ


def test_node_client_defaults_to_a_style_the_served_model_has(real_stack, tmp_path):
    """Without a request (or a style), the client asks ListModels and draws in the newest served
    version's first style: never one the model lacks."""
    if not _node_ready():
        pytest.skip("node or the @grpc/grpc-js packages are not available")
    out = tmp_path / "default.png"
    done = subprocess.run(["node", str(NODE_DIR / "generate.js"), real_stack.address, real_stack.api_key, str(out)],
                          capture_output=True, text=True, timeout=JOB_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    style = done.stdout.split()[1]
    assert style == real_stack.manifest.styles[0]
    assert_emoji(out.read_bytes(), real_stack.manifest)
    provenance = json.loads(out.with_name(out.name + ".json").read_text())["provenance"]
    assert (provenance["style"], provenance["model_name"]) == (style, real_stack.model)
