"""`python -m bench.fast --quick` runs end to end on tiny random models (a teacher, its random
student exported with --reuse-from, a tiny upscaler) and ends with one JSON line whose ratios are
its own figures' ratios. No timing is asserted (docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest import approx

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fast_quick() -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "bench.fast", "--quick"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("uptime before:") and any(line.startswith("uptime after:") for line in lines)
    record = json.loads(lines[-1])
    assert record["benchmark"] == "fast"
    f = record["figures"]
    assert (f["models"]["teacher"]["rows_per_image"], f["models"]["fast"]["rows_per_image"]) == (40, 4)
    assert f["models"]["fast"]["sampler"] == "lcm"
    for c, ratio in f["images_per_s_ratio"].items():
        assert ratio == approx(f["images_per_s"]["fast"][c] / f["images_per_s"]["teacher"][c])
        assert f["goal_met"][c] == (ratio >= f["goal_images_per_s_ratio"])
    assert f["latency_ratio_teacher_over_fast"] == approx(f["single_s"]["teacher"] / f["single_s"]["fast"])
    assert f["cascade"]["upscaler"] == "tiny-upscale/1" and set(f["cascade"]["images_per_s"]) == {"teacher", "fast"}
