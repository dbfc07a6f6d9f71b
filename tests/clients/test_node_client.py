"""A client written in another language from the .proto alone: Node.js with @grpc/grpc-js.

Needs `node` and `npm`; the packages are installed (pinned, tests/clients/node/package.json)
on first run and the test is skipped where neither they nor a registry are available.
"""

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.redis]

NODE_DIR = Path(__file__).resolve().parent / "node"


def _node_ready() -> bool:
    if not shutil.which("node"):
        return False
    if (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return True
    if not shutil.which("npm"):
        return False
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                          timeout=300)
    return done.returncode == 0


def test_node_client_generates_a_png(make_stack, tmp_path):
    if not _node_ready():
        pytest.skip("node or the @grpc/grpc-js packages are not available")
    stack = make_stack(start_worker=True)
    out = tmp_path / "fox.png"
    done = subprocess.run(["node", str(NODE_DIR / "generate.js"), stack.address, stack.keys.alice, str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.split()
    assert lines[0] == "queued" and "artifact" in lines and lines[-1] == "JOB_STATE_SUCCEEDED"
    assert Image.open(out).format == "PNG"
