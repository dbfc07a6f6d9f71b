"""bench.gateway --quick runs end to end on a tiny exported model and ends with its JSON line.

Real stack (embedded Redis, a Celery worker process, the gRPC gateway, the asyncio SDK load
process); no timing is asserted: the machines are shared, and the benchmark reports what it
measured side by side (docs/BENCHMARKS.md, "Gateway (issue 7)").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.tiny_models import tiny_repository as export_tiny

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_repository(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("gateway-bench"))


def test_quick_run_reports_every_figure(tiny_repository):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gateway", "--quick", "--repository", str(tiny_repository), "--model", "tiny",
         "--clients", "8"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) > 1  # progress first
    record = json.loads(lines[-1])
    assert record["benchmark"] == "gateway" and record["date"] and record["machine"]["cpu_count"] >= 1
    figures = record["figures"]

    assert figures["load_before"] and figures["load_after"]
    stages = {"accept", "screen", "admit", "enqueue", "pickup", "run", "finish", "deliver"}
    for name in ("minimal", "default"):  # the tiny repository has no fast model
        job = figures[f"{name}_job"]
        assert job["steps"] >= 1 and job["pairs"] == (5 if name == "minimal" else 2)
        for side in ("service", "in_process"):
            assert 0 < job[side]["min_ms"] <= job[side]["median_ms"] <= job[side]["max_ms"]
        assert set(job["stages_median_ms"]) == stages
        assert set(job["in_process_stages_median_ms"]) == {"first_step", "steps", "to_artifact", "finish"}
        assert 0 < job["p50_ms"] <= job["p99_ms"]
        assert job["fixed_overhead_median_ms"] > 0 and job["overhead_pct_lower_bound"] > 0
        q1, q2, q3 = job["overhead_pct_paired_quartiles"]
        assert q1 <= q2 <= q3
    assert "fast_job" not in figures
    for name in ("minimal", "default"):
        counted = figures["redis_commands"][name]
        assert counted["jobs"] == 5 and counted["sent_per_job"] >= counted["scripts_per_job"] >= 1
        assert counted["sent_by_command"]["EVALSHA"] >= 1
    default = figures["default_job"]
    assert default["goal_pct"] == 2.0 and default["goal_met"] == (default["overhead_pct_paired_median"] <= 2.0)
    minimal = figures["minimal_job"]
    assert minimal["steps"] == 1
    assert minimal["goal_met"] == (minimal["overhead_ms_of_medians"] <= 3.0 and minimal["p99_ms"] <= 20.0)

    runs = figures["submit"]["load"]
    assert [r["worker"] for r in runs] == ["paused", "running", "paused"]
    assert runs[2]["redis_keys_before"] >= 2000  # the filler keys
    for r in runs:
        assert r["clients"] == 8 and r["accepted"] > 0 and not r["refused"]
        # accepted / seconds, both as printed (to 0.01)
        rate = r["accepted_per_second"]
        assert r["accepted"] / (r["seconds"] + 0.005) - 0.005 <= rate <= r["accepted"] / (r["seconds"] - 0.005) + 0.005
        assert r["submit_p50_ms"] <= r["submit_p99_ms"]
    before, after = figures["submit"]["serial"]
    assert after["redis_keys_before"] >= before["redis_keys_before"] + 2000
    assert 0 < before["p50_ms"] <= before["p90_ms"] and 0 < after["p50_ms"]
