"""`atelier upscale` and `atelier generate --upscale` against a real gateway (SCRIPTED stand-in worker:
fixed PNGs, no model), and the SDK's `upscale`: the request each sends, the file each writes, and
one clear line, never a traceback, for every way it can go wrong. The real worker's upscaling is
tested end to end in tests/clients/test_upscale_end_to_end.py."""

from __future__ import annotations

import pytest
from PIL import Image

from atelier_cli.main import main as cli_main
from clients import Client
from tests.clients.deadlines import call_within
from tests.gateway.conftest import MODEL, SCRIPTED_IMAGE_SIDE, png_bytes, write_model
from tests.gateway.test_upscale_requests import UPSCALER, write_upscaler
from tests.gateway.test_validation import png_claiming, truncated_png

pytestmark = pytest.mark.redis


def atelier(argv: list[str]) -> int:
    return call_within(lambda: cli_main(argv), what=lambda: f"atelier {' '.join(argv[:2])}")


@pytest.fixture
def env(monkeypatch, make_stack, tmp_path):
    root = tmp_path / "models-sr"
    write_model(root)
    write_upscaler(root)
    stack = make_stack(start_worker=True, model_repository=root, default_upscaler=UPSCALER)
    monkeypatch.setenv("ATELIER_GATEWAY", stack.address)
    monkeypatch.setenv("ATELIER_API_KEY", stack.keys.alice)
    monkeypatch.chdir(tmp_path)
    return stack


def _last_spec(stack):
    job_id, _ = stack.queue.sent[-1]
    return stack.store.get(job_id).spec


def test_upscale_sends_an_upscale_job_and_writes_its_image_where_out_says(env, tmp_path, capsys):
    (tmp_path / "sprite.png").write_bytes(png_bytes(16, 16))
    code = atelier(["upscale", "sprite.png", "--out", "big/sprite-x4.webp", "--seed", "7", "--steps", "2",
                    "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.split() == ["big/sprite-x4.webp"] and "succeeded" in err
    assert Image.open(tmp_path / "big" / "sprite-x4.webp").size == (SCRIPTED_IMAGE_SIDE, SCRIPTED_IMAGE_SIDE)
    spec = _last_spec(env)
    assert spec.upscale_image == png_bytes(16, 16) and spec.prompts[0].prompt == ""
    assert (spec.seeds, spec.upscale, spec.upscale_steps, spec.output_format) == ((7,), 4, 2, "webp")
    assert (spec.plan.kind, spec.upscaler) == ("upscale", UPSCALER)


def test_upscale_without_out_writes_beside_its_input(env, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cat.png").write_bytes(png_bytes(16, 16))
    assert atelier(["upscale", "in/cat.png", "--fast", "--no-progress"]) == 0
    assert capsys.readouterr().out.split() == ["in/cat-x4.png"]
    assert _last_spec(env).upscale_fast is True


def test_generate_upscale_asks_for_the_cascade(env, capsys):
    code = atelier(["generate", "red apple", "--upscale", "4", "--upscale-steps", "3", "--seed", "5", "--out", "o",
                    "--no-progress"])
    assert code == 0, capsys.readouterr().err
    spec = _last_spec(env)
    assert (spec.model, spec.upscale, spec.upscale_steps, spec.upscaler) == (MODEL, 4, 3, UPSCALER)
    assert spec.plan.stages[:4] == ("condition", "sample", "decode", "upscale")


ERRORS = {
    "a bomb": (lambda p: p.write_bytes(png_claiming(100_000, 100_000)), [], 2, "upscale_image.data"),
    "a broken file": (lambda p: p.write_bytes(truncated_png()), [], 2, "upscale_image.data"),
    "another factor": (lambda p: p.write_bytes(png_bytes(8, 8)), ["--factor", "2"], 2, "upscale: must be 0 or 4"),
    "an output name that says no format": (lambda p: p.write_bytes(png_bytes(8, 8)), ["--out", "x.gif"], 2,
                                           "must end in .png, .jpg, .jpeg, .webp"),
    "a missing input": (lambda p: None, [], 2, "argument image: in.png: no such file"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_upscale_errors_are_one_clear_line(env, tmp_path, capsys, case):
    write, extra, code, says = ERRORS[case]
    write(tmp_path / "in.png")
    assert atelier(["upscale", "in.png", "--no-progress", *extra]) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err
    assert not (tmp_path / "in-x4.png").exists()


def test_the_sdk_upscales_a_path_or_bytes(env, tmp_path):
    (tmp_path / "s.png").write_bytes(png_bytes(12, 12))
    with Client(env.address, env.keys.alice, timeout=10) as c:
        for image in (tmp_path / "s.png", png_bytes(12, 12)):
            events = call_within(lambda image=image: list(c.upscale(image, seeds=[3], upscale_steps=1)),
                                 what=lambda: "upscale")
            assert events[-1].finished.state == 3  # SUCCEEDED
            assert _last_spec(env).upscale_image == png_bytes(12, 12)
