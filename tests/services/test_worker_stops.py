"""A real worker process stops sampling when a job is cancelled, passes its deadline or the soft
time limit, and when the worker shuts down; and labels every seed's image right.

The toy model appends the start time of every denoiser call to a file (ATELIER_TOY_CALL_LOG),
so the calls made after a stop are counted from outside the process. Each job here costs one
call a step (no guidance), so "the step in flight" is at most one call.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobState
from tests.services.test_worker_integration import (  # noqa: F401 - fixtures
    sender,
    solo_image,
    store,
    submit,
    wait_finished,
    wait_steps,
    workers,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SOFT_LIMIT = 2
SLACK = 0.2  # between the `started` event and the moment the worker's time-limit clock starts
# A slow call: a shutdown reaches the job through the worker's main thread, which a loaded
# machine may schedule late; a tenth of a second leaves it time to set the flag within a call.
CALL_SECONDS = 0.1


def calls(log: Path, after: float, before: float = math.inf) -> int:
    """Denoiser calls begun between the two times (whole lines only: the worker may be writing one)."""
    lines = log.read_text().split("\n")[:-1] if log.exists() else []
    return sum(after < float(line.split()[0]) < before for line in lines)


def event(events, kind):
    return next(e for e in events if e.kind == kind)


def test_a_worker_stops_sampling_at_every_kind_of_stop(workers, store, sender, tmp_path):  # noqa: F811
    log = tmp_path / "calls.log"
    worker = workers.start(concurrency=1, call_seconds=CALL_SECONDS, toy_call_log=str(log),
                           task_soft_time_limit=str(SOFT_LIMIT), task_time_limit="5")
    # Long enough to run on past each stop if it were ignored, short enough to end inside the hard limit.
    long = {"steps": 30, "guidance_scale": 1.0}

    # Seeds out of order and repeated: image i is the image of the seed it is labelled with.
    events = wait_finished(store, submit(store, sender, seeds=(9, 3, 9), steps=4))
    arts = [e for e in events if e.kind == EventKind.ARTIFACT]
    assert [a.data["seed"] for a in arts] == [9, 3, 9]
    for a in arts:
        image = np.frombuffer(a.blob, np.uint8).reshape(a.data["height"], a.data["width"], 4)
        assert np.array_equal(image, solo_image({"seeds": (a.data["seed"],), "steps": 4}))

    # Cancel: with one slot, the next job starts only once the cancelled one has let go of it.
    cancelled = submit(store, sender, **long)
    wait_steps(store, cancelled, 3)
    stopped_at = time.time()
    assert store.cancel(cancelled) == (JobState.CANCELLED, True)
    next_started = event(wait_finished(store, submit(store, sender, steps=1)), EventKind.STARTED).time
    assert calls(log, stopped_at, next_started) <= 1

    # Deadline, while running.
    deadline = time.time() + 2.0
    events = wait_finished(store, submit(store, sender, deadline=deadline, steps=40, guidance_scale=1.0))
    assert events[-1].data["state"] == JobState.EXPIRED
    assert calls(log, event(events, EventKind.STARTED).time, deadline) >= 1, "the job never ran"
    assert calls(log, deadline, events[-1].time) <= 1

    # The soft time limit.
    events = wait_finished(store, submit(store, sender, steps=40, guidance_scale=1.0))
    assert (events[-1].data["state"], events[-1].data["error_code"]) == (JobState.FAILED, ErrorCode.TIMEOUT)
    assert calls(log, event(events, EventKind.STARTED).time + SOFT_LIMIT + SLACK, events[-1].time) <= 1

    # Shutdown: the job goes back to its queue unfinished, and no more calls are made for it.
    handed_back = submit(store, sender, **long)
    wait_steps(store, handed_back, 3)
    stopped_at = time.time()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=20)
    assert calls(log, stopped_at) <= 1
    job = store.get(handed_back)
    assert not job.is_final and job.images_done == 0
