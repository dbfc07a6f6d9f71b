"""Runs one job end to end on this worker: the domain code behind the thin Celery task.

load the record -> skip if final -> lease it (services/worker/leases.py) -> EXPIRED if
past its deadline -> load the models (the base model, and the upscaler when the plan upscales;
an UPSCALE job only the upscaler) -> begin an attempt -> pipeline -> finish with exactly
one outcome -> give the lease up. Every failure of the job (bad input, unknown model, NaN,
time limit, a bug) ends the job, never the worker. Losing Redis ends only the attempt: the
job's lease lapses and a reaper hands it back, so a Redis restart fails no job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

import redis

from services.common import cost, metrics
from services.common.dataset_store import DatasetStores
from services.common.jobs import ErrorCode, JobRecord, JobState
from services.common.plan import JobKind
from services.common.settings import Settings
from services.common.store import JobNotFound, JobStore
from services.worker import content_credentials, pipeline
from services.worker.batching import NonFiniteOutput
from services.worker.concept_runtime import ConceptClassifiers, OnnxConceptRuntime, load_concept_classifier
from services.worker.delivered_images import DeliveredImages
from services.worker.leases import Leases
from services.worker.models import UPSCALER_DENOISER, LoadedModel, ModelRegistry, ModelUnavailable
from services.worker.reporting import (
    DeadlineExceeded,
    JobStopped,
    StoreReporter,
    TimeLimitExceeded,
    WorkerShuttingDown,
)
from services.worker.shard_sink import StoreShards
from services.worker.upscaling import Upscaler
from services.worker.watchdog import HardLimitWatchdog, StuckJob

log = logging.getLogger(__name__)

# Redis unreachable (down, restarting, loading its AOF): not the job's fault, so no job fails of it.
REDIS_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _model_of(job: JobRecord, default_model: str) -> tuple[str, str] | None:
    """(name, version) of the base model the job was planned against (None: an UPSCALE job has none)."""
    plan = job.spec.plan
    if plan is not None:
        return None if plan.kind == JobKind.UPSCALE else (plan.model, plan.model_version)
    return job.spec.model or default_model, job.spec.model_version


@dataclass(frozen=True)
class JobModels:
    """The loaded models one job runs: its base model and its upscaler, either of which may be absent."""

    base: LoadedModel | None
    upscaler: LoadedModel | None
    concepts: OnnxConceptRuntime | None = None  # the output concept classifier the plan names

    @property
    def main(self) -> LoadedModel:
        """The model that names the job in metrics and `started`: the base model, else the upscaler."""
        return self.base or self.upscaler

    def upscaling(self) -> Upscaler | None:
        if self.upscaler is None:
            return None
        return Upscaler(self.upscaler.runtime, self.upscaler.denoiser(False, UPSCALER_DENOISER))


class JobExecutor:
    def __init__(self, store: JobStore, models: ModelRegistry, settings: Settings, name: str | None = None):
        self.store, self.models, self.settings = store, models, settings
        self.name = name or worker_name()
        self.stop_event: threading.Event | None = None  # set: running jobs hand themselves back
        self.cancelled = None  # job_id -> bool from the worker's CancelListener, when it runs one
        self.watchdog: HardLimitWatchdog | None = None  # the hard time limit, when the worker runs one
        self.leases = Leases(store, settings.job_lease_seconds, owner=self.name)
        self.concept_classifiers = ConceptClassifiers(lambda name, version: load_concept_classifier(settings, name,
                                                                                                  version))
        self.datasets = DatasetStores(settings.dataset_dir, settings.dataset_s3_endpoint, settings.dataset_s3_region)
        self.row_times = cost.RowTimes()  # per model and size, from the jobs this worker finished
        content_credentials.configure(settings)  # a key that cannot sign stops the worker here, not each job
        self.on_measured = None  # called with row_times.snapshot() after each measured job
        self._busy = 0
        self._busy_lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Attempts running in this process now."""
        with self._busy_lock:
            return self._busy

    def run(self, job_id: str) -> str | None:
        """Run the job if it still needs running; returns its state afterwards (None: no such job)."""
        try:
            holder, job = self.leases.claim_with_record(job_id)  # one round trip
        except JobNotFound:
            log.warning("job %s not found (expired or never written); dropping its task", job_id)
            return None
        if holder is None:
            if not job.is_final:  # final: a redelivered task of a finished job, nothing to do
                log.info("job %s is held by a live worker; dropping this delivery", job_id)
            return job.state
        hand_back = False
        try:
            return self._run_leased(job, holder)
        except WorkerShuttingDown:
            hand_back = True  # and the task puts its message back on the queue
            raise
        except REDIS_UNREACHABLE as err:
            # No renewals from here: the lease lapses and a reaper sends the job again once Redis
            # answers (the job's message may be gone with the connection).
            self.leases.forget(job_id, holder)
            log.warning("job %s: lost Redis (%s); it goes back to its queue when its lease lapses", job_id, err)
            return None
        except Exception as err:  # noqa: BLE001 - failed outside the attempt's own handling: the job
            # fails rather than stay RUNNING with no lease, which nothing would ever finish
            log.exception("job %s failed outside its sampling", job_id)
            if self.leases.holds(job_id, holder):
                self._finish(job, None, JobState.FAILED, ErrorCode.INTERNAL, f"{type(err).__name__}: {err}")
            return self._state(job_id)
        finally:
            if self.leases.holds(job_id, holder):
                try:
                    self.leases.release(job_id, holder, hand_back=hand_back)
                except REDIS_UNREACHABLE:
                    self.leases.forget(job_id, holder)  # the lease lapses on its own

    def _run_leased(self, job: JobRecord, holder: str) -> str | None:
        job_id = job.job_id
        if job.spec.deadline is not None and time.time() >= job.spec.deadline:
            self._finish(job, None, JobState.EXPIRED, ErrorCode.NONE, "deadline passed before the job started")
            return self._state(job_id)
        try:
            loaded = self._models(job)
        except ModelUnavailable as err:
            self._finish(job, None, JobState.FAILED, ErrorCode.MODEL_UNAVAILABLE, str(err))
            return self._state(job_id)
        if self.stop_event is not None and self.stop_event.is_set():
            raise WorkerShuttingDown(job_id)  # a stopping worker begins no new attempt
        # A job's measured time counts its Redis steps from here on, as its ETA must (not a model load).
        received = time.perf_counter()
        attempt = self.store.begin_attempt(job_id, self.name, loaded.main.runtime.execution_provider, lease=holder)
        if attempt is None:
            return self._state(job_id)
        if attempt == 1:
            metrics.QUEUE_WAIT.labels(queue=job.spec.priority).observe(max(0.0, time.time() - job.created_at))
        with self._busy_lock:
            self._busy += 1
            metrics.BUSY_SLOTS.set(self._busy)
        try:
            with self.watchdog.track(job, attempt) if self.watchdog else contextlib.nullcontext():
                finished = self._sample(job, attempt, loaded, received)
        finally:
            with self._busy_lock:
                self._busy -= 1
                metrics.BUSY_SLOTS.set(self._busy)
        return finished or self._state(job_id)

    def _models(self, job: JobRecord) -> JobModels:
        base = _model_of(job, self.settings.default_model)
        upscale = job.spec.plan.upscale if job.spec.plan is not None else None
        check = job.spec.plan.concept_check if job.spec.plan is not None else None
        return JobModels(self.models.get(*base) if base is not None else None,
                         self.models.get(upscale.model, upscale.version) if upscale is not None else None,
                         self.concept_classifiers.get(check.model, check.version) if check is not None else None)

    def _sample(self, job: JobRecord, attempt: int, loaded: JobModels, received: float) -> str | None:
        """Run the attempt; returns SUCCEEDED when it finished the job so (None: ask the store)."""
        reporter = StoreReporter(
            self.store,
            job.job_id,
            attempt,
            deadline=job.spec.deadline,
            time_limit_seconds=self.settings.task_soft_time_limit,
            progress_interval_ms=self.settings.progress_interval_ms,
            # Ask Redis whether the job was cancelled no more often than progress is reported.
            check_interval_ms=self.settings.progress_interval_ms,
            confirmed_at=time.time(),  # begin_attempt has just handed this attempt the job
            stop_event=self.stop_event,
            cancelled=self.cancelled,
            delivered=DeliveredImages(self.store, job.tenant, self.settings.image_record_retention_days * 86400),
        )
        model_name = loaded.main.runtime.info.name
        skip = frozenset(self.store.artifact_indices(job.job_id)) if attempt > 1 else frozenset()
        plan = job.spec.plan
        if plan is not None:  # None: the pipeline refuses it
            left = plan.images_total - len(skip)
            if plan.dataset is not None and attempt > 1:
                left -= sum(s.images for s in self.store.shards(job.job_id).values())
            reporter.planned_seconds = cost.estimate_plan(plan, self.row_times.snapshot(), left)
        measured: dict[str, float] = {}

        started, succeeded = time.perf_counter(), False
        shards = None
        try:
            shards = self._shards(job, attempt, reporter)
            pipeline.generate(
                job,
                loaded.base.runtime if loaded.base else None,
                loaded.base.denoiser if loaded.base else None,
                reporter,
                rows_per_chunk=self.settings.max_batch,
                preview_size=self.settings.preview_size,
                max_upload_pixels=self.settings.max_upload_pixels,
                # Only an earlier attempt can have stored images: a first one need not ask.
                skip=skip,
                upscaler=loaded.upscaling(),
                measured=measured,
                concepts=loaded.concepts,
                shards=shards,
                dataset_chunks_in_flight=self.settings.dataset_chunks_in_flight,
            )
        except WorkerShuttingDown:
            log.info("job %s handed back: the worker is shutting down", job.job_id)
            raise
        except JobStopped:
            log.info("job %s stopped: cancelled or taken over", job.job_id)
        except DeadlineExceeded:
            self._finish(job, attempt, JobState.EXPIRED, ErrorCode.NONE, "deadline passed while running")
        except TimeLimitExceeded as err:
            self._finish(job, attempt, JobState.FAILED, ErrorCode.TIMEOUT, str(err))
        except pipeline.InvalidJob as err:
            self._finish(job, attempt, JobState.FAILED, ErrorCode.INVALID_INPUT, str(err))
        except pipeline.ModelMismatch as err:
            self._finish(job, attempt, JobState.FAILED, ErrorCode.MODEL_UNAVAILABLE, str(err))
        except NonFiniteOutput as err:
            self._finish(job, attempt, JobState.FAILED, ErrorCode.NUMERICAL, f"non-finite values: {err}")
        except REDIS_UNREACHABLE:
            raise
        except Exception as err:  # noqa: BLE001 - the job fails, the worker carries on
            log.exception("job %s failed", job.job_id)
            self._finish(job, attempt, JobState.FAILED, ErrorCode.INTERNAL, f"{type(err).__name__}: {err}")
        else:
            succeeded = self._finish(job, attempt, JobState.SUCCEEDED, ErrorCode.NONE, "")
            # A whole job's time: what the next estimates are made of (a dataset's later attempt made only part).
            if plan is not None and not skip and (plan.dataset is None or attempt == 1):
                self._measured(plan, time.perf_counter() - received, reporter.sampling_seconds,
                               measured.get("upscale_seconds", 0.0))
        finally:
            metrics.SAMPLING.labels(model=model_name).observe(time.perf_counter() - started)
            sampler = (job.spec.plan.sampler or "upscaler") if job.spec.plan else job.spec.sampler
            metrics.STEPS.labels(model=model_name, sampler=sampler).inc(reporter.steps_done)
            # A dataset job's images count once their shard is written.
            metrics.IMAGES.labels(model=model_name).inc(reporter.images_written + (shards.images if shards else 0))
        return JobState.SUCCEEDED if succeeded else None

    def _shards(self, job: JobRecord, attempt: int, reporter: StoreReporter) -> StoreShards | None:
        """A dataset job's shard sink, its time limits held per shard; None for other jobs."""
        plan = job.spec.plan
        if plan is None or plan.dataset is None:
            return None
        if self.watchdog is not None:
            reporter.on_shard_begins = lambda: self.watchdog.restart(job, attempt)
        return StoreShards(self.store, job, attempt, self.datasets.open(plan.dataset.output))

    def _measured(self, plan, seconds: float, sampling_seconds: float, upscale_seconds: float) -> None:
        """Record a finished job's time per part (services.common.cost.parts): the upscaler's part is
        its sampling alone; the base model's part is the rest, so its fixed part holds the encoding."""
        upscale = cost.of_upscale(plan)
        if upscale is None:
            self.row_times.record(cost.of_plan(plan), seconds, sampling_seconds)
        elif plan.kind == JobKind.UPSCALE:
            self.row_times.record(upscale, seconds, upscale_seconds)
        else:
            self.row_times.record(upscale, upscale_seconds, upscale_seconds)
            self.row_times.record(cost.of_plan(plan), seconds - upscale_seconds, sampling_seconds - upscale_seconds)
        if self.on_measured is not None:
            self.on_measured(self.row_times.snapshot())

    def fail_stuck(self, stuck: StuckJob, limit_seconds: float) -> bool:
        """Fail an attempt the hard time limit caught inside one call (see watchdog.py)."""
        message = (f"job stuck in one call for {stuck.seconds:.0f} s, past the hard time limit of "
                   f"{limit_seconds:g} s; its worker restarts")
        return self._finish(stuck.job, stuck.attempt, JobState.FAILED, ErrorCode.TIMEOUT, message)

    def _finish(self, job: JobRecord, attempt: int | None, state: str, code: str, message: str) -> bool:
        if self.store.finish(job.job_id, attempt, state, code, message, record=job):
            metrics.record_outcome(state, job.spec.priority, time.time() - job.created_at)
            return True
        return False

    def _state(self, job_id: str) -> str | None:
        try:
            return self.store.get(job_id).state
        except JobNotFound:
            return None
