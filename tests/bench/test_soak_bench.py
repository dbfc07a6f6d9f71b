"""bench.soak --quick runs end to end on a tiny exported model and ends with its JSON line.

Real processes (a Redis, `atelier gateway`, `atelier worker`); no timing or memory figure is
asserted (the machines are shared; the full run's figures live in docs/RELIABILITY.md), only
that every kind of call was made and answered as it should be, and that no job was lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.tiny_models import tiny_repository as export_tiny

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


def test_quick_soak_reports_every_window_and_loses_no_job(tmp_path, redis_url):
    models = export_tiny(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--quick", "--repository", str(models), "--model", "tiny",
         "--redis-url", redis_url, "--rate", "10"],
        cwd=ROOT, env=dict(os.environ, PYTHONWARNINGS="ignore"), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == "soak"
    figures = record["figures"]
    windows = figures["windows"]
    assert len(windows) == 6 and all(w["gateway_rss_mib"] > 0 and w["worker_rss_mib"] > 0 for w in windows)
    answers: dict[str, int] = {}
    for w in windows:
        for answer, n in w["answers"].items():
            answers[answer] = answers.get(answer, 0) + n
    assert not [a for a in answers if "client_error" in a], answers
    assert answers.get("interactive_accepted") and answers.get("oversized_upload_invalid_argument"), answers
    assert set(figures["memory"]) == {"gateway", "worker"}
    jobs = figures["jobs"]
    assert jobs["lost"] == 0 and jobs["accepted"] == sum(jobs["states"].values())
    assert set(jobs["states"]) <= {"SUCCEEDED", "CANCELLED"}, jobs
