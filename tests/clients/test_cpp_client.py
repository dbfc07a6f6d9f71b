"""The C++ client (clients/cpp), compiled with CMake from the .proto and the distribution's gRPC C++
packages (`make cpp-tools`, part of `make setup`), end to end against the real stack: the real
gateway on loopback, a real worker process and the shipped ONNX model.

The build goes to `.cache/cpp-client/` (git-ignored) and is incremental: the first run compiles
the generated stubs and the client (28 s of CPU; about 20 s on 2 quiet cores, 2 min 19 s at a
load average of 11), later runs only check it is current (0.3 s), and a changed .proto or
client source rebuilds what depends on it.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clients import Client, build_request
from tests.clients.deadlines import within
from tests.clients.real_stack import EMOJI_JOB, JOB_SECONDS, assert_emoji, pixels
from tests.clients.tcp_relay import TcpRelay

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "clients" / "cpp"
BUILD = ROOT / ".cache" / "cpp-client"
BUILD_SECONDS = 600  # a cold build on a loaded 2-core machine
TOOLS = ("cmake", "pkg-config", "protoc", "grpc_cpp_plugin", "c++")


@pytest.fixture(scope="session")
def cpp_client() -> Path:
    """The built `atelier-generate`; compiled once, rebuilt only when its sources changed."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    assert not missing, f"the C++ client's build tools are missing ({', '.join(missing)}): run `make cpp-tools`"
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:  # two pytest runs side by side build one after the other
        fcntl.flock(lock, fcntl.LOCK_EX)
        # No optimisation (build type None): a quicker compile (28 s of CPU against 36 s at -O2);
        # the tests observe behaviour, not speed.
        for step in (["cmake", "-S", str(SOURCE), "-B", str(BUILD / "build"), "-DCMAKE_BUILD_TYPE=None"],
                     ["cmake", "--build", str(BUILD / "build"), "--parallel", "2"]):
            done = subprocess.run(step, capture_output=True, text=True, timeout=BUILD_SECONDS)
            assert done.returncode == 0, f"{' '.join(step)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return BUILD / "build" / "atelier-generate"


def _args(stack, out: Path, seed: int, address: str | None = None) -> list[str]:
    return ["--address", address or stack.address, "--api-key", stack.api_key, "--prompt", EMOJI_JOB["prompt"],
            "--style", EMOJI_JOB["style"], "--sampler", EMOJI_JOB["sampler"], "--steps", str(EMOJI_JOB["steps"]),
            "--seed", str(seed), "--out", str(out)]


def _event_ids(lines: list[str]) -> list[str]:
    kinds = {"queued", "started", "progress", "preview", "artifact", "finished"}
    return [line.split()[1] for line in lines if line.split()[0] in kinds]


def _full_log(stack, job_id: str):
    with Client(stack.address, stack.api_key) as c:
        return within(c.watch(job_id), JOB_SECONDS)


def test_cpp_client_gets_the_shipped_models_image(cpp_client, real_stack, tmp_path):
    out = tmp_path / "cat.png"
    done = subprocess.run([str(cpp_client), *_args(real_stack, out, seed=7)], capture_output=True, text=True,
                          timeout=JOB_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("queued ") and lines[-1].endswith(" JOB_STATE_SUCCEEDED")
    (artifact,) = [line.split() for line in lines if line.startswith("artifact ")]
    assert artifact[2:] == ["0", "7", "32x32", str(out)]
    assert_emoji(out.read_bytes(), real_stack.manifest)
    # The same request from the Python SDK: the same seed gives the same image whichever client asks
    # (pixel for pixel; a file's metadata may name its own job).
    with Client(real_stack.address, real_stack.api_key) as c:
        events = within(c.generate(request=build_request(**EMOJI_JOB, seeds=[7])), JOB_SECONDS)
    (python_image,) = [e.artifact.data for e in events if e.HasField("artifact")]
    assert np.array_equal(pixels(out.read_bytes()), pixels(python_image))


def test_cpp_client_resumes_a_dropped_stream_from_the_last_event(cpp_client, real_stack, tmp_path):
    """The connection is cut by the network (a relay) right after the job's first event, dropping
    what the gateway sends next: the client watches from its last event id and gets every later
    event exactly once, and the job's image."""
    out = tmp_path / "resumed.png"
    with TcpRelay(real_stack.address, cut_before_data_frame=2) as relay:
        done = subprocess.run([str(cpp_client), *_args(real_stack, out, seed=11, address=relay.address),
                               "--preview-every", "2"], capture_output=True, text=True, timeout=JOB_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert relay.cuts == 1 and relay.connections >= 2
    queued, job_id = lines[0].split()[1:3]
    assert lines[0].startswith("queued ")
    # The resume comes right after the first event, from its id, on a dropped connection (UNAVAILABLE).
    assert lines[1].startswith(f"resume {job_id} after {queued} (14: "), lines
    log = _full_log(real_stack, job_id)
    assert _event_ids(lines) == [e.id for e in log]  # each event once, in order, none missed
    (image,) = [e.artifact.data for e in log if e.HasField("artifact")]
    assert out.read_bytes() == image
    assert_emoji(image, real_stack.manifest)


def test_cpp_client_names_a_bad_argument(cpp_client):
    done = subprocess.run([str(cpp_client), "--api-key", "k", "--prompt", "x", "--out", "x.png", "--steps", "-1"],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 2
    assert done.stderr.startswith("atelier-generate: argument --steps: '-1': expected a whole number")


def test_cpp_client_without_a_valid_key_exits_3(cpp_client, real_stack, tmp_path):
    done = subprocess.run([str(cpp_client), *_args(real_stack, tmp_path / "x.png", seed=1), "--api-key", "atk_no"],
                          capture_output=True, text=True, timeout=JOB_SECONDS)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "atelier-generate: " in done.stderr and not (tmp_path / "x.png").exists()


def test_cpp_client_lists_the_served_models(cpp_client, real_stack):
    done = subprocess.run([str(cpp_client), "--models", "--address", real_stack.address, "--api-key",
                           real_stack.api_key], capture_output=True, text=True, timeout=JOB_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith(f"{real_stack.model}/{real_stack.version} ")]
    assert line.split("styles:")[1].split()[:-1] == list(real_stack.manifest.styles)
    assert line.endswith(" ready")


def test_cpp_client_watches_a_job_after_an_event(cpp_client, real_stack, tmp_path):
    """`--watch JOB --after ID`: the job's events after ID, none before, and its image."""
    with Client(real_stack.address, real_stack.api_key) as c:
        log = within(c.generate(request=build_request(**EMOJI_JOB, seeds=[5])), JOB_SECONDS)
    out = tmp_path / "watched.png"
    done = subprocess.run([str(cpp_client), "--address", real_stack.address, "--api-key", real_stack.api_key,
                           "--watch", log[0].job_id, "--after", log[0].id, "--out", str(out)],
                          capture_output=True, text=True, timeout=JOB_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _event_ids(done.stdout.splitlines()) == [e.id for e in log[1:]]
    (image,) = [e.artifact.data for e in log if e.HasField("artifact")]
    assert out.read_bytes() == image
