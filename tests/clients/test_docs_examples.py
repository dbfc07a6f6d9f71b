"""Every example in README.md and docs/*.md runs, as written, against the shipped model
(docs/TESTING.md, "Docs that run"); one that cannot run here is marked and checked instead.

- `sh` blocks: each command runs in bash with `.venv/bin` on PATH and `ATELIER_GATEWAY` /
  `ATELIER_API_KEY` naming the real stack (tests/clients/real_stack.py: a real worker process
  serving models/, the real gateway); `atelier up` on its own is that stack, already running.
- `python` blocks run as a script with `api_key` defined; `js` blocks run with node and the
  packages of tests/clients/node. In both the documented address 127.0.0.1:50051 is the stack's.
- Each block runs in a fresh folder that looks like the repository root (its top-level entries
  linked), holding `sprite.png` (a 32x32 RGBA image), so paths read as the docs write them and
  what a command writes stays in the folder. JOB_ID and EVENT_ID name a finished job of the
  stack and its first event; KEY_ID the key id an earlier command of the block printed.
- Commands must succeed without a traceback; every PNG they write must open.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.clients.real_stack import EMOJI_JOB, JOB_SECONDS
from tests.docs.blocks import ROOT, Block, commands, every_block, words

DOCUMENTED_ADDRESS = "127.0.0.1:50051"
COMMAND_SECONDS = 180  # a command's first job on a model the worker has not loaded yet, on a loaded machine
NODE_DIR = ROOT / "tests" / "clients" / "node"


def _where(block: Block) -> str:
    return block.where


@pytest.fixture(scope="session")
def finished_job(real_stack) -> tuple[str, str]:
    """A finished job of the stack and its first event id: what JOB_ID and EVENT_ID stand for."""
    from clients import Client
    from tests.clients.deadlines import within

    with Client(real_stack.address, real_stack.api_key) as c:
        events = within(c.generate(**EMOJI_JOB, seeds=[3]), JOB_SECONDS)
    return events[0].job_id, events[0].id


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "out", "runs", "data", "build"}:
            (work / entry.name).symlink_to(entry)
    sprite = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    sprite.paste((230, 60, 40, 255), (8, 8, 24, 24))
    sprite.save(work / "sprite.png")
    return work


def _env(stack) -> dict[str, str]:
    return {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "ATELIER_GATEWAY": stack.address, "ATELIER_API_KEY": stack.api_key,
            "NODE_PATH": str(NODE_DIR / "node_modules")}


def _is_the_stack(command: str) -> bool:
    argv = words(command)
    return len(argv) == 2 and Path(argv[0]).name == "atelier" and argv[1] == "up"


def _run(argv: list[str], where: str, work: Path, env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=COMMAND_SECONDS)
    said = f"{where}: `{argv[-1] if argv[0] == 'bash' else ' '.join(argv)}` exited {done.returncode}\n" \
           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, said
    assert "Traceback" not in done.stderr, said
    return done.stdout + done.stderr


def _pngs_open(work: Path) -> None:
    """Every PNG the block wrote (the linked repository folders are not walked) opens as an image."""
    for folder, _, files in os.walk(work):  # does not follow the links
        for name in files:
            if name.endswith(".png") and not (Path(folder) / name).is_symlink():
                Image.open(io.BytesIO((Path(folder) / name).read_bytes())).load()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("block", [b for b in every_block() if b.runs], ids=_where)
def test_the_example_runs_against_the_shipped_model(block, real_stack, finished_job, tmp_path):
    _run_block(block, real_stack, finished_job, tmp_path)


def _run_block(block: Block, real_stack, finished_job: tuple[str, str], tmp_path: Path) -> None:
    work, env = _workdir(tmp_path), _env(real_stack)
    job_id, event_id = finished_job
    if block.kind == "sh":
        said = ""
        for command in commands(block.text):
            if _is_the_stack(command):
                continue
            key_id = re.search(r"atk_([A-Za-z0-9]+)_", said)
            command = command.replace("JOB_ID", job_id).replace("EVENT_ID", event_id) \
                .replace("KEY_ID", key_id.group(1) if key_id else "KEY_ID")
            said += _run(["bash", "-c", command], block.where, work, env)
    elif block.kind == "python":
        script = work / "example.py"
        script.write_text('import os\napi_key = os.environ["ATELIER_API_KEY"]\n'
                          + block.text.replace(DOCUMENTED_ADDRESS, real_stack.address))
        _run([str(ROOT / ".venv" / "bin" / "python"), str(script)], block.where, work, env)
    else:
        from tests.clients.test_node_client import _node_ready

        if not _node_ready():
            pytest.skip("node or the @grpc/grpc-js packages are not available")
        script = work / "example.js"
        script.write_text(block.text.replace(DOCUMENTED_ADDRESS, real_stack.address))
        _run(["node", str(script)], block.where, work, env)
    _pngs_open(work)




@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("language, text", [
    ("sh", 'atelier generate "a fox" --style google --out out/\n'),
    ("python", 'from clients import Client\n\nwith Client("127.0.0.1:50051", api_key) as c:\n'
               '    list(c.generate("a fox", style="google"))\n'),
    ("sh", "atelier jobs watch JOB_ID --after EVENT_ID\natelier generate 'a fox' --model atelier-emoij --out out/\n"),
])
def test_an_example_asking_for_what_the_model_lacks_fails(language, text, real_stack, finished_job, tmp_path):
    block = Block(ROOT / "docs" / "X.md", 1, language, text, None)
    with pytest.raises(AssertionError, match="exited"):
        _run_block(block, real_stack, finished_job, tmp_path)
