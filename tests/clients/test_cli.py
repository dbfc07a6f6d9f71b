"""`atelier generate`, `atelier jobs`, `atelier models` against a real gateway.

Most tests run the CLI in this process against the gateway with the SCRIPTED stand-in worker
(`env`: fixed 8x8 PNGs, no model), which tests the CLI's handling of events, files and errors;
`test_generate_end_to_end_on_the_shipped_model` runs the `atelier` command against the real stack
(`real_stack`: a real worker process serving the shipped ONNX model) and checks the images it writes.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from atelier_cli.config import default_api_key, save_api_key
from atelier_cli.main import main as cli_main
from clients import Client
from services.common.embedded_redis import free_port
from tests.clients.deadlines import call_within, within
from tests.clients.real_stack import EMOJI_JOB, JOB_SECONDS, ROOT, assert_different_images, assert_emoji, pixels
from tests.gateway.conftest import SCRIPTED_IMAGE_SIDE, png_bytes

pytestmark = pytest.mark.redis


def atelier(argv: list[str]) -> int:
    """`atelier ARGV` in this process, with a deadline: a stuck stream fails the test, not the suite."""
    return call_within(lambda: cli_main(argv), what=lambda: f"atelier {' '.join(argv[:2])}")


@pytest.fixture
def env(monkeypatch, make_stack, tmp_path):
    """The CLI's settings pointing at a gateway whose worker is the scripted stand-in."""
    stack = make_stack(start_worker=True)
    monkeypatch.setenv("ATELIER_GATEWAY", stack.address)
    monkeypatch.setenv("ATELIER_API_KEY", stack.keys.alice)
    monkeypatch.chdir(tmp_path)
    return stack


def test_generate_writes_the_scripted_workers_images_and_the_latest_preview(env, tmp_path, capsys):
    init = tmp_path / "init.png"
    init.write_bytes(png_bytes(32, 32))
    code = atelier(["generate", "a red fox", "--style", "google", "--seed", "7", "--seed", "8", "--steps", "4",
                    "--sampler", "dpmpp_2m", "--size", "32x32", "--init", str(init), "--strength", "0.5",
                    "--out", "pics", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    paths = out.split()
    assert len(paths) == 2 and all(p.startswith("pics/") and p.endswith(".png") for p in paths)
    assert Image.open(tmp_path / paths[0]).size == (SCRIPTED_IMAGE_SIDE, SCRIPTED_IMAGE_SIDE)  # the stand-in's PNG
    assert "latest preview" in err and list((tmp_path / "pics").glob("*-preview.jpg"))
    assert "queued" in err and "succeeded" in err


@pytest.mark.slow
def test_generate_end_to_end_on_the_shipped_model(real_stack, tmp_path):
    """The `atelier` command, as a user runs it, writes the images a real worker drew with the
    shipped model: the same seed twice gives the same file, and the file the SDK gets for it."""
    env = dict(os.environ, ATELIER_GATEWAY=real_stack.address, ATELIER_API_KEY=real_stack.api_key)
    done = subprocess.run(
        [sys.executable, "-m", "atelier_cli", "generate", EMOJI_JOB["prompt"], "--style", EMOJI_JOB["style"],
         "--sampler", EMOJI_JOB["sampler"], "--steps", str(EMOJI_JOB["steps"]),
         "--seed", "7", "--seed", "8", "--seed", "7", "--out", str(tmp_path / "pics"), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=JOB_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    seven, eight, seven_again = (Path(p).read_bytes() for p in done.stdout.split())
    for image in (seven, eight, seven_again):
        assert_emoji(image, real_stack.manifest)
    assert (pixels(seven_again) == pixels(seven)).all()
    assert_different_images(seven, eight)
    size = f"{real_stack.manifest.image.width}x{real_stack.manifest.image.height}"
    assert f"({size}, seed 8, {EMOJI_JOB['sampler']}, {EMOJI_JOB['steps']} steps)" in done.stderr
    assert "succeeded" in done.stderr
    with Client(real_stack.address, real_stack.api_key) as c:
        events = within(c.generate(**EMOJI_JOB, seeds=[7]), JOB_SECONDS)
    (from_sdk,) = [e.artifact.data for e in events if e.HasField("artifact")]
    assert (pixels(from_sdk) == pixels(seven)).all()


def test_generate_shows_a_progress_bar(env, capsys):
    assert atelier(["generate", "a fox", "--seed", "1", "--out", "o"]) == 0
    assert "step" in capsys.readouterr().err  # tqdm's bar


def test_jobs_and_models(env, capsys):
    from clients import Client

    with Client(env.address, env.keys.alice) as c:
        job_id = c.submit("a gem", seeds=[4], labels={"campaign": "spring"}).job_id
    assert atelier(["jobs", "get", job_id]) == 0
    shown = capsys.readouterr().out
    assert job_id in shown and "campaign=spring" in shown
    assert atelier(["jobs", "watch", job_id, "--out", "w", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().endswith(".png")
    assert atelier(["jobs", "cancel", job_id]) == 0
    assert "already succeeded" in capsys.readouterr().out
    assert atelier(["models"]) == 0
    listing = capsys.readouterr().out
    assert "test-model/1  ready" in listing and "google, twitter" in listing


@pytest.mark.parametrize("argv, code, words", [
    (["generate", "x", "--api-key", "atk_bad_key"], 3, "API key"),
    (["generate", "", "--steps", "999", "--size", "30x32"], 2, "steps"),
    (["jobs", "get", "0" * 32], 4, "no such job"),
    (["jobs", "cancel", "nope"], 4, "no such job"),
])
def test_errors_are_one_clear_message(env, capsys, argv, code, words):
    assert atelier(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("atelier: ") and words in err and "Traceback" not in err


def test_unreachable_gateway(monkeypatch, capsys):
    monkeypatch.setenv("ATELIER_API_KEY", "atk_a_b")
    assert atelier(["models", "--gateway", f"127.0.0.1:{free_port()}", "--timeout", "2"]) == 6
    assert "cannot reach the gateway" in capsys.readouterr().err


def test_key_file_is_the_default_key(monkeypatch, tmp_path):
    monkeypatch.delenv("ATELIER_API_KEY", raising=False)
    monkeypatch.setenv("ATELIER_API_KEY_FILE", str(tmp_path / "key"))
    assert default_api_key() is None
    save_api_key("atk_dev_key")
    assert default_api_key() == "atk_dev_key"
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600


def test_an_unknown_sampler_is_refused_naming_the_choices(capsys):
    assert atelier(["generate", "x", "--sampler", "foo"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'foo'" in err and "unipc" in err and "Traceback" not in err
