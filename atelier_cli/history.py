"""`atelier jobs list`: the tenant's job history as a table, newest first (ListJobs)."""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime

from atelier_cli.arguments import whole
from clients.history import KINDS, STATES, kind_name, state_name

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def since(text: str) -> float:
    """Unix seconds of `--since`: an age such as 30m, 6h, 2d, or an ISO date or time (UTC unless it says)."""
    found = _AGO.match(text.strip().lower())
    if found:
        return time.time() - float(found[1]) * _UNITS[found[2]]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected an age (30m, 6h, 2d, 1w) or an ISO time (2026-12-04 or 2026-12-04T09:30)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def register_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", action="append", default=[], choices=STATES, metavar="STATE",
                        help=f"only jobs in this state (repeatable): {', '.join(STATES)}")
    parser.add_argument("--kind", action="append", default=[], choices=KINDS, metavar="KIND",
                        help=f"only jobs of this kind (repeatable): {', '.join(KINDS)}")
    parser.add_argument("--since", type=since, default=None, metavar="WHEN",
                        help="only jobs created since then: an age (30m, 6h, 2d) or an ISO time (UTC)")
    parser.add_argument("--limit", type=whole(1), default=20, metavar="N", help="at most N jobs (default 20)")


def _when(ts) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def rows(jobs) -> list[tuple[str, ...]]:
    header = ("JOB", "STATE", "KIND", "MODEL", "IMAGES", "CREATED (UTC)", "FINISHED (UTC)")
    out = [header]
    for job in jobs:
        model = f"{job.model}/{job.model_version}" if job.model else "-"
        out.append((job.job_id, state_name(job.state), kind_name(job.kind), model,
                    f"{job.images_done}/{job.images_total}", _when(job.created_at), _when(job.finished_at)))
    return out


def print_jobs(client, args) -> int:
    jobs = list(client.list_jobs(states=args.state, kinds=args.kind, created_after=args.since, limit=args.limit))
    if not jobs:
        print("no jobs")
        return 0
    table = rows(jobs)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0
