"""`atelier train package-fast` (diffusion/training/package_fast.py): a distilled student's run
packaged with its teacher's VAE as a fast model folder, and refused when the teacher cannot serve
it (another VAE or latent config, a VAE that is not the distillation bundle's, a guidance default
outside the learned range)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from bench.tiny_models import atelier_checkpoint, fast_checkpoint
from diffusion.training.package_fast import package_student


def metrics(path: Path, steps: int) -> Path:
    rows = [{"step": s, "time": 1000.0 + s, "loss": 1.0 - s / 1000, "steps_per_s": 7.0} for s in range(0, steps, 20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def setup(tmp_path):
    teacher = atelier_checkpoint(tmp_path / "teacher")
    shutil.copy(teacher / "vae.safetensors", teacher / "vae_ema.safetensors")
    run = fast_checkpoint(tmp_path / "run", teacher)
    cfg = json.loads((run / "config.json").read_text())
    del cfg["consistency"]["sample_sigma_min"]
    vae_sha = hashlib.sha256((teacher / "vae_ema.safetensors").read_bytes()).hexdigest()
    cfg["distill"] = {"bundle": {"teacher_vae_sha256": vae_sha}}
    (run / "config.json").write_text(json.dumps(cfg))
    runs = [(metrics(tmp_path / "m1.jsonl", 100), "run 1", "cmd 1"),
            (metrics(tmp_path / "m2.jsonl", 60), "run 2", "cmd 2")]
    return teacher, run, runs, tmp_path / "out"


def test_the_package_holds_the_student_the_teacher_s_vae_and_fast_defaults(setup):
    teacher, run, runs, out = setup
    files = package_student(run, teacher, out, runs=runs, guidance_scale=6.0, steps=4, ramp_sigma_min=0.002)
    cfg = json.loads(files["config"].read_text())
    assert cfg["defaults"] == {"sampler": "lcm", "steps": 4, "guidance_scale": 6.0, "schedule": "karras"}
    assert cfg["consistency"]["sample_sigma_min"] == 0.002 and cfg["unet"]["guidance_embed"]
    assert (out / "vae_ema.safetensors").read_bytes() == (teacher / "vae_ema.safetensors").read_bytes()
    assert (out / "unet_ema.safetensors").read_bytes() == (run / "unet_ema.safetensors").read_bytes()
    prov = cfg["provenance"]
    assert [r["command"] for r in prov["distill_runs"]] == ["cmd 1", "cmd 2"]
    assert [r["logged_steps"] for r in prov["distill_runs"]] == [81, 41]
    assert files["curves"].stat().st_size > 0


@pytest.mark.parametrize("case, words", [
    ("another VAE", "not the VAE the student was distilled with"),
    ("another latent", "its latent differs from the teacher's"),
    ("guidance outside", "outside the range the student learned"),
    ("not a student", "not a distilled student"),
])
def test_what_the_teacher_cannot_serve_is_refused(setup, case, words):
    teacher, run, runs, out = setup
    cfg = json.loads((run / "config.json").read_text())
    guidance = 5.0
    if case == "another VAE":
        (teacher / "vae_ema.safetensors").write_bytes((teacher / "vae_ema.safetensors").read_bytes() + b"x")
    elif case == "another latent":
        cfg["latent"]["scale"] = 0.5
    elif case == "guidance outside":
        guidance = 9.0
    else:
        del cfg["consistency"]
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=words):
        package_student(run, teacher, out, runs=runs, guidance_scale=guidance)
    assert not (out / "config.json").exists()
