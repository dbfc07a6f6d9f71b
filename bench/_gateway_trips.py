"""Redis commands a job costs, for bench.gateway: counted with MONITOR, so the figure does not
depend on how busy the machine is (issue 19).

Runs `jobs` jobs one after another through the service while a MONITOR connection records every
command Redis executes, then records an idle window of the same length (heartbeats, lease
renewals, reapers, the broker's blocking pops, health checks) and subtracts it. Commands a Lua
script runs inside Redis are counted apart from those a client sends (each of which is a
command on the wire; a pipeline sends several in one round trip).
"""

from __future__ import annotations

import collections
import re
import threading
import time
from typing import Any

import redis

_LINE = re.compile(r'^\d+\.\d+ \[\d+ (?P<client>[^\]]+)\] "(?P<command>[^"]+)"')


class _Monitor:
    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)
        self.sent: collections.Counter = collections.Counter()  # command -> calls sent by clients
        self.scripted: collections.Counter = collections.Counter()  # command -> calls made by scripts
        self.recording = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Monitor:
        self._thread.start()
        time.sleep(0.3)  # MONITOR is on
        return self

    def _run(self) -> None:
        with self.client.monitor() as monitor:
            conn = monitor.connection
            conn.socket_timeout = 0.2
            while not self._stop.is_set():
                try:
                    line = conn.read_response()
                except (redis.TimeoutError, TimeoutError):
                    continue
                except redis.ConnectionError:
                    return
                text = line.decode(errors="replace") if isinstance(line, bytes) else str(line)
                found = _LINE.match(text)
                if found and self.recording:
                    where = self.scripted if found["client"] == "lua" else self.sent
                    where[found["command"].upper()] += 1

    def window(self, seconds_or_work) -> tuple[collections.Counter, collections.Counter, float]:
        """(sent, scripted, seconds) over `seconds_or_work` (a callable run now, or a number of idle seconds)."""
        self.sent, self.scripted = collections.Counter(), collections.Counter()
        started = time.perf_counter()
        self.recording = True
        if callable(seconds_or_work):
            seconds_or_work()
        else:
            time.sleep(seconds_or_work)
        time.sleep(0.3)  # let the last commands' lines arrive
        self.recording = False
        return self.sent, self.scripted, time.perf_counter() - started

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.client.close()


def commands_per_job(url: str, run_job, jobs: int) -> dict[str, Any]:
    """Commands per job, idle traffic subtracted: what clients sent (by command) and what scripts ran."""
    with _Monitor(url) as monitor:
        sent, scripted, busy = monitor.window(lambda: [run_job(i) for i in range(jobs)])
        idle_sent, idle_scripted, idle = monitor.window(busy)
    scale = busy / idle if idle > 0 else 1.0

    def per_job(count: collections.Counter, background: collections.Counter) -> dict[str, float]:
        out = {c: round((n - background.get(c, 0) * scale) / jobs, 2) for c, n in count.items()}
        return {c: v for c, v in sorted(out.items(), key=lambda kv: -kv[1]) if v >= 0.05}

    sent_per_job, scripted_per_job = per_job(sent, idle_sent), per_job(scripted, idle_scripted)
    return {"jobs": jobs, "sent_per_job": round(sum(sent_per_job.values()), 1),
            "scripts_per_job": round(sum(v for c, v in sent_per_job.items() if c in ("EVALSHA", "EVAL")), 1),
            "sent_by_command": sent_per_job, "run_by_scripts": round(sum(scripted_per_job.values()), 1),
            "window_seconds": round(busy, 2)}
