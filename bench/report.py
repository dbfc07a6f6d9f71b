"""The convention every benchmark follows.

A benchmark is a module `bench/<name>.py` run as `python -m bench.<name>`. It prints
readable progress while it runs and ends with exactly one line of JSON: its figures,
plus the machine and the date, so that `docs/BENCHMARKS.md` can quote both.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from typing import Any


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        info["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def finish(benchmark: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Print the closing JSON line and return it."""
    record = {
        "benchmark": benchmark,
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "figures": figures,
    }
    sys.stdout.flush()
    print(json.dumps(record, sort_keys=True, default=float), flush=True)
    return record
