"""The `atelier` command line and a user's mistakes: one line naming the flag and what it takes,
exit status 2, no traceback; `--seed S --count N` makes N images with seeds S..S+N-1; after an
interrupt, the hint says what became of the job (resumable, or cancelled by --cancel-on-exit).

Runs the real entry point: `python -m atelier_cli` in a subprocess where the output or a signal
matters, `main(argv)` in this process otherwise, against a real gateway with the SCRIPTED stand-in
worker (tests/clients/conftest.py).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from atelier_cli.main import main as cli_main
from clients import Client
from tests.clients.deadlines import call_within
from tests.clients.real_stack import ROOT

STARTUP_SECONDS = 60.0  # a fresh interpreter importing the CLI on a loaded 2-core machine


def atelier_process(argv, env=None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "atelier_cli", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("argv, words", [
    (["--steps", "-1"], "argument --steps: '-1': expected a whole number of at least 1"),
    (["--seed", "-5"], "argument --seed: '-5': expected a whole number from 0 to 18446744073709551615"),
    (["--sampler", "foo"], "argument --sampler: invalid choice: 'foo'"),
    (["--count", "0"], "argument --count: '0': expected a whole number of at least 1"),
    (["--steps", "many"], "argument --steps: 'many'"),
    (["--strength", "1.5"], "argument --strength: '1.5': expected a number above 0 and at most 1"),
    (["--quality", "500"], "argument --quality: '500': expected a whole number from 1 to 100"),
    (["--size", "0x64"], "argument --size: '0x64'"),
    (["--preview-every", "-2"], "argument --preview-every"),
    (["--deadline", "-3"], "argument --deadline"),
    (["--init", "no-such-image.png"], "argument --init: no-such-image.png: no such file"),
    (["--seed", "1", "--seed", "2", "--count", "3"], "--count 3 with 2 --seed values"),
])
def test_a_bad_argument_is_one_line_and_exit_2(argv, words):
    done = subprocess.run([sys.executable, "-m", "atelier_cli", "generate", "a fox", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=STARTUP_SECONDS,
                          env=dict(os.environ, ATELIER_GATEWAY="127.0.0.1:9", ATELIER_API_KEY="atk_a_b"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("atelier generate: ") and words in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("argv, words", [
    (["upscale", "no-such-sprite.png"], "atelier upscale: argument image: no-such-sprite.png: no such file"),
    (["upscale", str(ROOT / "README.md"), "--seed", "-1"], "atelier upscale: argument --seed"),
    (["models", "--timeout", "0"], "atelier models: argument --timeout: '0': expected a number above 0"),
])
def test_other_commands_check_their_arguments_too(argv, words, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(words) and err.count("\n") == 1


@pytest.fixture
def gateway_env(monkeypatch, make_stack, tmp_path):
    def make(start_worker: bool):
        stack = make_stack(start_worker=start_worker)
        monkeypatch.setenv("ATELIER_GATEWAY", stack.address)
        monkeypatch.setenv("ATELIER_API_KEY", stack.keys.alice)
        monkeypatch.chdir(tmp_path)
        return stack

    return make


def test_count_with_one_seed_makes_consecutive_seeds(gateway_env, capsys):
    gateway_env(start_worker=True)
    code = call_within(lambda: cli_main(["generate", "a fox", "--seed", "41", "--count", "4", "--out", "o",
                                          "--no-progress"]))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(out.split()) == 4
    assert [f"seed {s}," in err for s in (41, 42, 43, 44)] == [True] * 4


def _interrupt_a_queued_job(stack, extra):
    """Start `atelier generate` on a gateway whose worker never runs the job, SIGINT it once the
    job is queued; returns (exit status, stderr, job id)."""
    env = dict(os.environ, ATELIER_GATEWAY=stack.address, ATELIER_API_KEY=stack.keys.alice)
    process = atelier_process(["generate", "a fox", "--seed", "3", "--no-progress", *extra], env=env)
    try:
        line = ""
        deadline = time.monotonic() + STARTUP_SECONDS
        while "queued" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
        assert "queued" in line, f"no queued event; exit {process.poll()}"
        job_id = line.split()[1]
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=STARTUP_SECONDS)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    return process.returncode, rest, job_id


def _state(stack, job_id) -> str:
    from atelier.v1 import types_pb2

    with Client(stack.address, stack.keys.alice) as c:
        return types_pb2.JobState.Name(c.get(job_id).state)


def test_interrupt_hints_how_to_resume(gateway_env):
    stack = gateway_env(start_worker=False)
    code, err, job_id = _interrupt_a_queued_job(stack, [])
    assert code == 130, err
    assert f"`atelier jobs watch {job_id} --after " in err and "resumes" in err and "Traceback" not in err
    assert _state(stack, job_id) == "JOB_STATE_QUEUED"


def test_cancel_on_exit_says_cancelled_and_gives_no_resume_hint(gateway_env):
    stack = gateway_env(start_worker=False)
    code, err, job_id = _interrupt_a_queued_job(stack, ["--cancel-on-exit"])
    assert code == 130, err
    assert f"job {job_id} is cancelled (--cancel-on-exit)" in err
    assert "resume" not in err and "jobs watch" not in err and "Traceback" not in err
    deadline = time.monotonic() + 20
    while _state(stack, job_id) != "JOB_STATE_CANCELLED" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _state(stack, job_id) == "JOB_STATE_CANCELLED"
