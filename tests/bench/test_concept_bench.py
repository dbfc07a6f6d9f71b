"""`python -m bench.concepts --quick` runs end to end on a tiny random base model and a tiny random
concept classifier and ends with one JSON line whose ratios are its own figures' ratios; every
checked job ran the concept stage. No timing is asserted (docs/BENCHMARKS.md)."""

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
@pytest.mark.redis
def test_concepts_quick() -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "bench.concepts", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    record = json.loads([line for line in proc.stdout.splitlines() if line.strip()][-1])
    assert record["benchmark"] == "concepts"
    f = record["figures"]
    assert f["classifier"] == "tiny-concepts/1" and f["base_model"] == "tiny/1"
    jobs = f["jobs"]
    assert jobs["pairs"] == 2
    assert 0 < jobs["stage_share_q1"] <= jobs["stage_share_median"] <= jobs["stage_share_max"] < 1
    assert jobs["ratio_of_minima"] == approx(jobs["checked_ms_min"] / jobs["plain_ms_min"])
    assert jobs["goal_met"] == (jobs["stage_share_median"] <= jobs["goal"] - 1)
    assert set(f["classifier_alone"]) == {"1", "8"}
