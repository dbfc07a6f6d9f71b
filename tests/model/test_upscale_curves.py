"""The upscaler's training curves: a continued run drawn after the run it started from."""

from __future__ import annotations

import json

from diffusion.training.upscale_curves import chained, main


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_second_run_continues_the_first_runs_step_axis_and_a_steps_records_merge(tmp_path):
    first = _write(tmp_path / "run1.jsonl", [{"step": 0, "loss": 1.0, "lr": 1e-3},
                                             {"step": 20, "loss": 0.5, "lr": 1e-3},
                                             {"step": 20, "val_psnr_model": 25.0, "val_psnr_bicubic": 22.0}])
    second = _write(tmp_path / "run2.jsonl", [{"step": 0, "loss": 0.4, "lr": 3e-4},
                                              {"step": 10, "loss": 0.3, "lr": 2e-4, "val_psnr_model": 26.0}])
    recs, starts = chained([first, second])
    assert [r["step"] for r in recs] == [0, 20, 20, 30]
    assert recs[1] == {"step": 20, "loss": 0.5, "lr": 1e-3, "val_psnr_model": 25.0, "val_psnr_bicubic": 22.0}
    assert starts == [20] and recs[-1]["val_psnr_model"] == 26.0
    out = tmp_path / "curves.png"
    assert main(["--diffusion", str(first), str(second), "--cnn", str(first), "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and not (tmp_path / "curves.psnr.png").exists()
