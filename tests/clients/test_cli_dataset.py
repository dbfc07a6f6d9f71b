"""`atelier dataset SPEC --out ...` and `atelier dataset inspect ...` as a user runs them: the
`atelier` command against `atelier up`'s stack on a tiny exported model, writing to a folder and
to a real S3-compatible server (moto in server mode); and every spec mistake as one line naming
it, exit status 2, before anything is sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from atelier_cli.dataset_spec import SpecError, load
from atelier_cli.main import main as cli_main
from atelier_cli.up import EmbeddedStack
from services.common.settings import Settings
from tests.s3_server import bucket, s3_endpoint  # noqa: F401 - the fixture


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from bench.tiny_models import tiny_repository

    return tiny_repository(tmp_path_factory.mktemp("dataset-model"))


def atelier(*argv: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atelier_cli", *argv], env={**os.environ, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.redis
def test_a_dataset_made_and_inspected_from_the_command_line_in_a_folder_and_in_s3(tiny_models, tmp_path,
                                                                                  s3_endpoint):  # noqa: F811
    bucket(s3_endpoint, "studio")
    (tmp_path / "prompts.txt").write_text("# icons\nred apple\n\nblue gem\ngreen leaf\n")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"prompt_file": "prompts.txt", "styles": ["noto", "twemoji"],
                                "seeds": {"start": 10, "count": 3}, "steps": 6, "shard_size": 5}))
    settings = Settings.from_env({}, model_repository=tiny_models, default_model="tiny", grpc_listen="127.0.0.1:0",
                                 gateway_metrics_port=0, worker_metrics_port=0, dataset_dir=tmp_path / "datasets",
                                 dataset_s3_endpoint=s3_endpoint)
    with EmbeddedStack(settings, state_dir=tmp_path / "up", worker_concurrency=2) as stack:
        env = {"ATELIER_GATEWAY": stack.address, "ATELIER_API_KEY": stack.api_key}
        made = atelier("dataset", str(spec), "--out", "icons/v1", "--no-progress", env=env, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        assert made.stdout.strip() == "18 images in 4 shards written to icons/v1 (in the workers' dataset directory)"
        job_id = made.stderr.split("dataset job ", 1)[1].split(":", 1)[0]
        shown = atelier("jobs", "get", job_id, env=env, cwd=tmp_path)
        assert "    shards  4/4 in icons/v1" in shown.stdout and "    images  18/18" in shown.stdout, shown.stdout

        looked = atelier("dataset", "inspect", str(tmp_path / "datasets" / "icons" / "v1"), "--sheet", "sheet.png",
                         "--sample", "6", env=env, cwd=tmp_path)
        assert looked.returncode == 0, looked.stdout + looked.stderr
        assert "shards:   4 (4 in the index, pattern shard-{000000..000003}.tar)" in looked.stdout
        assert "images:   18 (18 in the index)" in looked.stdout
        assert "prompts:  3 distinct; styles: noto 9, twemoji 9" in looked.stdout
        assert "sheet:    sheet.png (6 images" in looked.stdout
        assert Image.open(tmp_path / "sheet.png").size[0] >= 3 * 64

        to_s3 = atelier("dataset", str(spec), "--out", "s3://studio/icons/v1", "--shard-size", "9",
                        env=env, cwd=tmp_path)
        assert to_s3.returncode == 0, to_s3.stderr
        assert to_s3.stdout.strip() == "18 images in 2 shards written to s3://studio/icons/v1"
        assert "shards 2/2" in to_s3.stderr  # the progress bar counts shards
        from_s3 = atelier("dataset", "inspect", "s3://studio/icons/v1", "--s3-endpoint", s3_endpoint,
                          "--sheet", "s3.png", env=env, cwd=tmp_path)
        assert from_s3.returncode == 0, from_s3.stdout + from_s3.stderr
        assert "images:   18 (18 in the index)" in from_s3.stdout

    # A damaged shard is found against the index.
    shard = tmp_path / "datasets" / "icons" / "v1" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:-1024])
    damaged = atelier("dataset", "inspect", str(shard.parent), "--sheet", "d.png", env={}, cwd=tmp_path)
    assert damaged.returncode == 1 and "problem:  shard-000001.tar: its sha256 differs from the index's" in \
        damaged.stdout


SPEC_ERRORS = {
    "not json": ("{", "not JSON (line 1"),
    "a list": ("[]", "must be a JSON object"),
    "an unknown key": ({"prompts": ["a"], "seeds": [1], "promts": 1}, "unknown key 'promts'"),
    "no prompts": ({"seeds": [1]}, "give either 'prompts'"),
    "both prompt sources": ({"prompts": ["a"], "prompt_file": "p.txt", "seeds": [1]}, "give either 'prompts'"),
    "an empty prompt": ({"prompts": ["a", " "], "seeds": [1]}, "prompts[1] is empty"),
    "a prompt of the wrong shape": ({"prompts": [{"text": "a"}], "seeds": [1]}, "prompts[0] must be"),
    "a missing prompt file": ({"prompt_file": "nope.txt", "seeds": [1]}, "cannot read it"),
    "no seeds": ({"prompts": ["a"]}, "'seeds' is missing"),
    "a negative seed": ({"prompts": ["a"], "seeds": [1, -5]}, "seeds[1] must be a whole number"),
    "a zero count": ({"prompts": ["a"], "seeds": {"start": 0, "count": 0}}, "seeds.count must be"),
    "a style twice": ({"prompts": ["a"], "seeds": [1], "styles": ["noto", "noto"]}, "names a style twice"),
    "steps as text": ({"prompts": ["a"], "seeds": [1], "steps": "ten"}, "'steps' must be a whole number"),
    "shards too large": ({"prompts": ["a"], "seeds": [1], "shard_size": 10_001}, "'shard_size' must be"),
    "an absolute output": ({"prompts": ["a"], "seeds": [1], "output": "/data/x"}, "is not relative"),
}


@pytest.mark.parametrize("case", sorted(SPEC_ERRORS))
def test_each_spec_mistake_is_one_line_naming_it(case, tmp_path, capsys):
    content, says = SPEC_ERRORS[case]
    spec = tmp_path / "spec.json"
    spec.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(SpecError, match=None) as err:
        load(spec)
    assert says in str(err.value) and str(spec) in str(err.value)
    assert cli_main(["dataset", str(spec), "--out", "x"]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and says in err_text and "Traceback" not in err_text


@pytest.mark.parametrize(("argv", "says"), [
    (["--out", "/abs/path"], "--out '/abs/path': '/abs/path' is not relative"),
    (["--out", "gs://b/x"], "'gs' is not a store"),
    ([], "--out is missing"),
])
def test_a_bad_or_missing_out_is_one_line(argv, says, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"prompts": ["a"], "seeds": [1]}))
    assert cli_main(["dataset", str(spec), *argv]) == 2
    assert says in capsys.readouterr().err


def test_inspect_of_no_dataset_is_one_line(tmp_path, capsys):
    assert cli_main(["dataset", "inspect", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no index.json there (not a dataset?)" in err
