"""`atelier generate`, `atelier jobs`, `atelier models` against a real gateway."""

import pytest
from PIL import Image

from clients.cli import main as atelier
from clients.config import default_api_key, save_api_key
from services.common.embedded_redis import free_port
from tests.gateway.conftest import png_bytes

pytestmark = pytest.mark.redis


@pytest.fixture
def env(monkeypatch, make_stack, tmp_path):
    stack = make_stack(start_worker=True)
    monkeypatch.setenv("ATELIER_GATEWAY", stack.address)
    monkeypatch.setenv("ATELIER_API_KEY", stack.keys.alice)
    monkeypatch.chdir(tmp_path)
    return stack


def test_generate_writes_images_and_the_latest_preview(env, tmp_path, capsys):
    init = tmp_path / "init.png"
    init.write_bytes(png_bytes(32, 32))
    code = atelier(["generate", "a red fox", "--style", "google", "--seed", "7", "--seed", "8", "--steps", "4",
                    "--sampler", "dpmpp_2m", "--size", "32x32", "--init", str(init), "--strength", "0.5",
                    "--out", "pics", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    paths = out.split()
    assert len(paths) == 2 and all(p.startswith("pics/") and p.endswith(".png") for p in paths)
    assert Image.open(tmp_path / paths[0]).size == (8, 8)
    assert "latest preview" in err and list((tmp_path / "pics").glob("*-preview.jpg"))
    assert "queued" in err and "succeeded" in err


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
