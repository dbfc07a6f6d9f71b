"""The pipeline's view of the job store: events out, "should I stop?" in.

`check()` runs between sampler steps: it stops the job when it was cancelled (or taken
over by a later attempt after this worker was presumed lost), when its deadline passed,
when it ran past the soft time limit (Celery's own time limits need signals, which the
thread pool does not have), and when the worker is shutting down (the job is then handed
back to its queue). A cancellation arrives by pub/sub (services.worker.cancellations) and
stops the job at its next step. Whether the job is still this attempt's costs a Redis round
trip, so it is asked at most once per `check_interval_ms` (a progress event written also confirms it):
one round trip per step was 3 % of a default job's time on a CPU worker, and more of a GPU's
shorter steps. A cancelled job's `finished` event is written by the cancel itself; the
worker only notices it up to one interval (plus a step) later.
"""

from __future__ import annotations

import time

from services.common import cost
from services.common import events as ev
from services.common.jobs import FinishReason
from services.common.store import JobStore


class JobStopped(Exception):
    """The job is no longer this attempt's to run (cancelled, or superseded)."""


class DeadlineExceeded(Exception):
    """The job's deadline passed while it ran."""


class TimeLimitExceeded(Exception):
    """The job ran past the worker's soft time limit."""


class WorkerShuttingDown(Exception):
    """The worker is stopping: the job goes back to its queue unfinished."""


class StoreReporter:
    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        *,
        deadline: float | None = None,
        time_limit_seconds: float | None = None,
        progress_interval_ms: float = 100,
        check_interval_ms: float = 0,
        confirmed_at: float | None = None,
        clock=time.time,
        stop_event=None,
        cancelled=None,
        delivered=None,
    ):
        self.store, self.job_id, self.attempt = store, job_id, attempt
        # services.worker.delivered_images.DeliveredImages: where each image is recorded for LookupImage
        self.delivered = delivered
        self.deadline = deadline
        self.clock = clock
        self.started = clock()
        self._limit_from = self.started  # the soft time limit counts from here: the attempt, or a dataset's shard
        self.on_shard_begins = None  # called as a dataset job begins a shard (the executor's hard limit)
        self._shards_sent: tuple[int, int] | None = None
        self._images_sent = 0  # images_done of the last progress event written
        self.time_limit_seconds = time_limit_seconds
        self.progress_interval = progress_interval_ms / 1000.0
        self._last_progress = float("-inf")
        self.check_interval = check_interval_ms / 1000.0
        # When Redis last said this attempt still owns the job (None: never yet).
        self._confirmed = float("-inf") if confirmed_at is None else confirmed_at
        self.steps_done = 0
        self.images_written = 0
        # The job's estimated time (services.common.cost), its ETA until a step has run.
        self.planned_seconds = 0.0
        # From the first progress report to the last step: the job's time in its sampler.
        self._sampling_from: float | None = None
        self._sampled_until: float | None = None
        self.stop_event = stop_event
        # job_id -> bool, fed by the worker's cancel listener: a stop within one step, no round trip
        self.cancelled = cancelled

    def check(self) -> None:
        now = self.clock()
        if self.stop_event is not None and self.stop_event.is_set():
            raise WorkerShuttingDown(self.job_id)
        if self.cancelled is not None and self.cancelled(self.job_id):
            raise JobStopped(self.job_id)
        if now - self._confirmed >= self.check_interval:
            if not self.store.still_running(self.job_id, self.attempt):
                raise JobStopped(self.job_id)
            self._confirmed = now
        if self.deadline is not None and now >= self.deadline:
            raise DeadlineExceeded(self.job_id)
        if self.time_limit_seconds is not None and now - self._limit_from > self.time_limit_seconds:
            raise TimeLimitExceeded(f"job ran longer than {self.time_limit_seconds:g} s")

    def shard_begins(self) -> None:
        """A dataset job's time limits hold per shard (services/worker/datasets.py)."""
        self._limit_from = self.clock()
        if self.on_shard_begins is not None:
            self.on_shard_begins()

    def progress(self, steps_done: int, steps_total: int, images_done: int,
                 shards: tuple[int, int] | None = None) -> None:
        now = self.clock()
        if self._sampling_from is None:
            self._sampling_from = now
        if steps_done > self.steps_done:
            self._sampled_until = now
        self.steps_done = steps_done
        # At most one event per interval (a client needs a few a second, not one a step), except that
        # an image or a shard written is always told at once: the report after a chunk's last image
        # is the attempt's last progress event, so the final count is never left out. A step count
        # alone (the last step, before decoding) waits for the interval like any other.
        told = (images_done, shards) != (self._images_sent, self._shards_sent)
        if not told and now - self._last_progress < self.progress_interval:
            return
        self._last_progress = now
        self._images_sent, self._shards_sent = images_done, shards
        elapsed = now - self.started
        eta = cost.remaining_seconds(elapsed, steps_done, steps_total, self.planned_seconds)
        payload = ev.Progress(steps_done, steps_total, eta, images_done, *(shards or (0, 0)))
        updates = {"steps_done": steps_done, "steps_total": steps_total}
        self._require(self.store.append_event(self.job_id, self.attempt, payload, updates=updates))
        self._confirmed = now  # the write succeeded only because the attempt still owns the job

    @property
    def sampling_seconds(self) -> float:
        """Wall time from the job's first progress report to its last step (0 before a step)."""
        if self._sampling_from is None or self._sampled_until is None:
            return 0.0
        return self._sampled_until - self._sampling_from

    def preview(self, index: int, step: int, jpeg: bytes, width: int, height: int) -> None:
        payload = ev.Preview(width, height, index, step)
        self._require(self.store.append_event(self.job_id, self.attempt, payload, blob=jpeg))

    def artifact(self, payload: ev.Artifact, blob: bytes) -> None:
        if self.delivered is not None and payload.finish_reason == FinishReason.COMPLETED:
            self.delivered.record(self.job_id, payload, blob)
        if self.store.add_artifact(self.job_id, self.attempt, payload, blob) is not None:
            self.images_written += 1
        else:
            # Refused: either the job stopped being ours, or this index was already recorded.
            if not self.store.still_running(self.job_id, self.attempt):
                raise JobStopped(self.job_id)

    def policy(self, payload: ev.Policy) -> None:
        self._require(self.store.append_event(self.job_id, self.attempt, payload))

    def _require(self, written: str | None) -> None:
        if written is None:
            raise JobStopped(self.job_id)
