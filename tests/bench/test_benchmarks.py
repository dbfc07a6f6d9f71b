"""Each benchmark runs end to end in --quick mode on a tiny model and ends with one valid JSON line.

No timing is asserted anywhere: the machines are shared, and the benchmarks themselves report
ratios measured side by side (docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_quick(name: str, tmp_path: Path) -> dict:
    plot = tmp_path / f"{name}.png"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", f"bench.{name}", "--quick", "--plot", str(plot)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    record = json.loads(lines[-1])     # the closing line is the JSON record (bench/report.py)
    assert record["benchmark"] == name and record["date"] and record["machine"]["cpu_count"] >= 1
    assert plot.stat().st_size > 0
    assert len(lines) > 1               # and progress came before it
    return record["figures"]


@pytest.mark.slow
def test_engines_quick(tmp_path: Path) -> None:
    figures = run_quick("engines", tmp_path)
    assert set(figures["models"]) == {"default", "large"}
    assert figures["models"]["large"]["params_m"] > figures["models"]["default"]["params_m"]
    for entry in figures["models"].values():
        row = entry["by_threads"]["1"]
        for engine in ("torch", "ort-plain", "ort-worker"):
            assert set(row[engine]["latency_ms"]) == {"1", "2"} and row[engine]["finite"]
        assert row["speedup_ort-worker"]["latency"]["1"] > 0 and row["roofline_ort_worker"]["1"] > 0
    assert {"default_t1_ort_b1_speedup", "large_t1_roofline_best"} <= set(figures["goals"])


@pytest.mark.slow
@pytest.mark.redis
def test_batching_quick(tmp_path: Path) -> None:
    figures = run_quick("batching", tmp_path)
    assert set(figures["images_per_s"]) == {"on", "off"}
    assert set(figures["speedup"]["on"]) == {"1", "2"}
    # Rows per call: at least one job's two CFG rows (tiny jobs may not overlap in time).
    assert figures["mean_batch_rows"]["on"]["2"] >= 2.0
    assert figures["single_job_latency_ratio"]["on"] > 0
    assert {"throughput_speedup_at_8_met", "single_job_latency_met"} <= set(figures["goals"])
