"""The images under deploy/docker: lint-clean, multi-stage, non-root, healthy, and consistent
with the code (ports, settings, CLI subcommands, the CUDA/TensorRT that onnxruntime-gpu links).

No Docker engine runs on the development machines, so nothing is built here: the Dockerfiles
are parsed and linted, and the gateway's health-check script runs against a real gRPC server.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shlex
import subprocess
import sys
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from atelier_cli.main import SUBCOMMANDS
from atelier_cli.up import PLAYGROUND_LISTEN

from .helpers import DEFAULTS, DOCKER, ROOT, SETTING_NAMES, port_of, run, tool

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
SERVICES = {  # image -> (ports it must expose, health check kind)
    "gateway": ({port_of(DEFAULTS.grpc_listen), port_of(PLAYGROUND_LISTEN), DEFAULTS.gateway_metrics_port}, "grpc"),
    "worker-gpu": ({DEFAULTS.worker_metrics_port}, "celery"),
    "worker-cpu": ({DEFAULTS.worker_metrics_port}, "celery"),
    "trainer": (set(), "none"),
}


@dataclass
class Instruction:
    op: str
    args: str
    line: int


def parse(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        op, _, args = text.partition(" ")
        out.append(Instruction(op.upper(), args.strip(), start))
    assert not pending, f"{path.name}: dangling line continuation"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.op == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def image_of(path: Path) -> str:
    return path.name.removesuffix(".Dockerfile")


def exec_form(args: str) -> list[str]:
    import json

    return json.loads(args) if args.startswith("[") else shlex.split(args)


def test_every_image_is_there():
    assert {image_of(p) for p in DOCKERFILES} == set(SERVICES)


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_of)
def test_hadolint_clean(path):
    hadolint = tool("hadolint")
    result = run(hadolint, "--no-color", str(path.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_of)
def test_multi_stage_non_root_with_healthcheck(path):
    parts = stages(parse(path))
    assert len(parts) >= 2, "build in one stage, run from a clean one"
    final = parts[-1]
    users = [i.args for i in final if i.op == "USER"]
    assert users, "the final stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    ops = [i.op for i in final]
    assert ops.index("USER") < ops.index("ENTRYPOINT"), "USER comes before ENTRYPOINT"
    health = [i.args for i in final if i.op == "HEALTHCHECK"]
    assert len(health) == 1, "exactly one HEALTHCHECK in the final stage"
    kind = SERVICES[image_of(path)][1]
    if kind == "none":
        assert health[0] == "NONE"
        return
    cmd = health[0].split("CMD", 1)[1].strip()
    if kind == "grpc":
        assert exec_form(cmd)[0] == "grpc-health-check"
        copies = [i.args for i in final if i.op == "COPY" and "grpc_health_check.py" in i.args]
        assert copies and copies[0].endswith("/usr/local/bin/grpc-health-check"), copies
    else:
        assert "inspect ping" in cmd and "celery@$HOSTNAME" in cmd, cmd
        module = re.search(r"-A\s+([\w.]+)", cmd).group(1)
        assert importlib.util.find_spec(module) is not None, (
            f"the health check pings the Celery app in `{module}`, which does not exist"
        )


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_of)
def test_ports_settings_and_entrypoint_match_the_code(path):
    final = stages(parse(path))[-1]
    exposed = {int(p) for i in final if i.op == "EXPOSE" for p in i.args.split()}
    assert exposed == SERVICES[image_of(path)][0]
    env_keys = set()
    for ins in final:
        if ins.op == "ENV":
            env_keys |= {m.group(1) for m in re.finditer(r"(?:^|\s)([A-Z_][A-Z0-9_]*)=", ins.args)}
    atelier = {k for k in env_keys if k.startswith("ATELIER_")}
    assert atelier <= SETTING_NAMES, f"not settings: {sorted(atelier - SETTING_NAMES)}"
    entry = exec_form(next(i.args for i in final if i.op == "ENTRYPOINT"))
    assert entry[0] == "atelier", entry
    if len(entry) > 1:
        assert entry[1] in SUBCOMMANDS, f"`atelier {entry[1]}` is no subcommand"
    for ins in final:
        for name in ("ATELIER_GRPC_LISTEN", "ATELIER_HTTP_LISTEN"):
            if ins.op == "ENV" and f"{name}=" in ins.args:
                listen = re.search(rf"{name}=(\S+)", ins.args).group(1)
                assert listen.startswith("0.0.0.0:"), "listen on every interface inside a container"


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes
        ):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("path", DOCKERFILES, ids=image_of)
def test_copied_files_exist_and_reach_the_build_context(path):
    patterns = _dockerignore()
    for ins in parse(path):
        if ins.op != "COPY" or "--from=" in ins.args:
            continue
        words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
        for source in words[:-1]:
            hint = " (the shipped model repository is not committed yet)" if source == "models" else ""
            assert (ROOT / source).exists(), f"{path.name}:{ins.line}: COPY {source}: no such path{hint}"
            assert not _ignored(source.rstrip("/"), patterns), f".dockerignore drops {source}"


def test_pip_installs_stay_out_of_the_image_build_cache():
    for path in DOCKERFILES:
        for ins in parse(path):
            if ins.op == "RUN" and "pip install" in ins.args:
                for cmd in ins.args.split("&&"):
                    if "pip install" in cmd:
                        assert "--no-cache-dir" in cmd, f"{path.name}:{ins.line}"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line} is not pinned"
            pins[name] = version
    return pins


def test_gpu_image_matches_the_cuda_and_tensorrt_onnxruntime_links():
    """The CUDA base image and the TensorRT wheel are the majors onnxruntime-gpu was built for."""
    pins = _pins(DOCKER / "requirements-gpu.txt")
    dockerfile = (DOCKER / "worker-gpu.Dockerfile").read_text()
    cuda_major = int(
        re.search(r"ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.\d+\.\d+-cudnn-runtime-", dockerfile).group(1)
    )
    trt_major = int(next(v for k, v in pins.items() if k.startswith("tensorrt")).split(".")[0])
    trt_package = next(k for k in pins if k.startswith("tensorrt"))
    assert trt_package.startswith(f"tensorrt-cu{cuda_major}"), (
        f"{trt_package} does not match CUDA {cuda_major}"
    )
    assert _pins(DOCKER / "requirements-cpu.txt")["onnxruntime"] == pins["onnxruntime-gpu"]

    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.origin:
        pytest.skip("onnxruntime is not installed here: cannot read which libraries it links")
    capi = Path(spec.origin).parent / "capi"
    provider = capi / "libonnxruntime_providers_tensorrt.so"
    versions = sorted(capi.glob("libonnxruntime.so.*"))
    if not provider.exists() or not versions:
        pytest.skip("the installed onnxruntime is not onnxruntime-gpu")
    installed = versions[-1].name.removeprefix("libonnxruntime.so.")
    if installed != pins["onnxruntime-gpu"]:
        pytest.skip(f"installed onnxruntime-gpu {installed} is not the pinned {pins['onnxruntime-gpu']}")
    needed = dict(re.findall(rb"lib(cudart|nvinfer|cudnn)\.so\.(\d+)", provider.read_bytes()))
    assert int(needed[b"cudart"]) == cuda_major, f"onnxruntime-gpu {installed} links CUDA {needed[b'cudart']}"
    assert int(needed[b"nvinfer"]) == trt_major, (
        f"onnxruntime-gpu {installed} links TensorRT {needed[b'nvinfer']}"
    )
    assert int(needed[b"cudnn"]) == 9 and "cudnn" in dockerfile


# --- the gateway image's health check, against a real gRPC server -------------------------------


@pytest.fixture
def health_server():
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


def _check_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCKER / "grpc_health_check.py"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_health_check_script_follows_the_serving_status(health_server):
    sys.path.insert(0, str(DOCKER))
    try:
        import grpc_health_check
    finally:
        sys.path.remove(str(DOCKER))
    servicer, addr = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert grpc_health_check.check(addr) == (True, "SERVING")
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert grpc_health_check.check(addr) == (False, "NOT_SERVING")
    serving, status = grpc_health_check.check(addr, service="no.such.Service")
    assert not serving and status.startswith("NOT_FOUND")

    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    result = _check_script("--addr", addr)  # as the container runs it
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SERVING" in result.stdout


def test_health_check_script_fails_when_nothing_listens():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _check_script("--addr", f"127.0.0.1:{port}", "--timeout", "1")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stdout or "DEADLINE_EXCEEDED" in result.stdout
