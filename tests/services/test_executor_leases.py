"""The executor's lease and hand-back paths (services/worker/executor.py, services/worker/leases.py),
in process on the real job store: which deliveries run, what a stopping worker and a lost Redis
leave behind, what the worker's gauges, watchdog and measurements see of a running job."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from prometheus_client import REGISTRY

from services.common import cost, image_fingerprint
from services.common import events as ev
from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobState, Priority
from services.common.settings import Settings
from services.common.shards import shard_info
from services.worker.executor import JobExecutor
from services.worker.leases import Leases, leases_key
from services.worker.models import ModelRegistry
from services.worker.reporting import WorkerShuttingDown
from services.worker.watchdog import HardLimitWatchdog, StuckJob
from tests.services import test_dataset_jobs, toy_runtime
from tests.services.test_pipeline import models, store, submit  # noqa: F401 - fixtures

pytestmark = pytest.mark.redis


def executor_of(store, models) -> JobExecutor:  # noqa: F811 - the fixtures
    return JobExecutor(store, models, Settings.from_env({}, default_model="toy", progress_interval_ms=0),
                       name="test-worker")


@pytest.fixture
def executor(store, models) -> JobExecutor:  # noqa: F811
    return executor_of(store, models)


def lease_of(store, job_id: str) -> tuple[bytes | None, float | None]:  # noqa: F811
    """(the job's lease holder, its lease's expiry in the leases zset)."""
    return store.client.hget(store.job_key(job_id), "lease"), store.client.zscore(leases_key(store), job_id)


def kinds(store, job_id: str) -> list[str]:  # noqa: F811
    return [e.kind for e in store.read_events(job_id)]


def during_sampling(executor: JobExecutor, look) -> list:
    """Calls `look()` at every step of the jobs `executor` runs (through the cancel listener's
    hook, which the reporter asks at every check) and keeps what it saw; no job is cancelled."""
    seen = []
    executor.cancelled = lambda job_id: seen.append(look()) and False
    return seen


def test_a_job_that_does_not_exist_is_dropped(executor):
    assert executor.run("no-such-job") is None


def test_a_final_job_is_not_run_or_leased_again(store, executor):  # noqa: F811
    job_id = submit(store, steps=2)
    store.cancel(job_id)
    before = kinds(store, job_id)
    assert executor.run(job_id) == JobState.CANCELLED
    assert kinds(store, job_id) == before and lease_of(store, job_id) == (None, None)


def test_a_job_leased_by_a_live_worker_is_left_to_it(store, executor, models):  # noqa: F811
    job_id = submit(store, steps=2)
    other = Leases(store, 30, owner="other-worker")
    holder = other.claim(job_id)
    assert executor.run(job_id) == JobState.QUEUED
    record = store.get(job_id)
    assert record.attempt == 0 and kinds(store, job_id) == ["queued"] and models.loaded() == []
    assert lease_of(store, job_id)[0] == holder.encode() and executor.leases.held() == {}


def test_a_finished_job_gives_its_lease_up(store, executor):  # noqa: F811
    job_id = submit(store, steps=2)
    held = during_sampling(executor, lambda: lease_of(store, job_id))
    assert executor.run(job_id) == JobState.SUCCEEDED
    holder, expiry = held[0]
    assert holder.decode().startswith("test-worker/") and expiry is not None
    assert lease_of(store, job_id) == (None, None) and executor.leases.held() == {}


def test_a_worker_that_is_stopping_hands_a_new_job_back_unstarted(store, executor):  # noqa: F811
    job_id = submit(store, steps=2)
    executor.stop_event = threading.Event()
    executor.stop_event.set()
    with pytest.raises(WorkerShuttingDown) as stopped:
        executor.run(job_id)
    assert stopped.value.args == (job_id,)
    record = store.get(job_id)
    assert (record.state, record.attempt) == (JobState.QUEUED, 0)
    assert lease_of(store, job_id) == (None, None) and executor.leases.held() == {}


def test_a_worker_stopping_mid_job_hands_the_running_job_back_to_its_queue(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1, 2), steps=6)
    executor.stop_event = threading.Event()
    during_sampling(executor, executor.stop_event.set)
    with pytest.raises(WorkerShuttingDown):
        executor.run(job_id)
    record = store.get(job_id)
    assert (record.state, record.attempt, record.images_done) == (JobState.QUEUED, 1, 0)
    assert "finished" not in kinds(store, job_id)
    assert lease_of(store, job_id) == (None, None) and executor.leases.held() == {}
    # the next delivery runs it as attempt 2
    executor.stop_event = None
    executor.cancelled = None
    assert executor.run(job_id) == JobState.SUCCEEDED and store.get(job_id).attempt == 2


class RedisGoneRuntime(toy_runtime.ToyRuntime):
    """The toy, except that its first denoiser call finds Redis gone (raised where the worker's
    own Redis calls would raise it)."""

    def denoiser(self, tiling: bool = False):
        def call(x, sigma, cond):
            raise redis.ConnectionError("Connection refused")
        return call


def test_losing_redis_mid_job_fails_nothing_and_leaves_the_lease_to_lapse(store):  # noqa: F811
    registry = ModelRegistry(lambda m, v: RedisGoneRuntime(m, v or "1"), max_batch=4, wait_ms=1)
    try:
        executor = executor_of(store, registry)
        job_id = submit(store, steps=3)
        assert executor.run(job_id) is None
        record = store.get(job_id)
        assert (record.state, record.error_code) == (JobState.RUNNING, ErrorCode.NONE)
        holder, expiry = lease_of(store, job_id)
        assert holder.decode().startswith("test-worker/") and expiry is not None  # a reaper hands it back
        assert executor.leases.held() == {}  # and this worker no longer renews it
    finally:
        registry.close()


def test_a_failure_outside_sampling_fails_the_job_and_releases_its_lease(store, models):  # noqa: F811
    def announce(keys):
        raise RuntimeError("heartbeat refused the announcement")

    models.on_load = announce
    executor = executor_of(store, models)
    job_id = submit(store, steps=2)
    assert executor.run(job_id) == JobState.FAILED
    record = store.get(job_id)
    assert (record.error_code, record.error_message) == (ErrorCode.INTERNAL,
                                                         "RuntimeError: heartbeat refused the announcement")
    assert lease_of(store, job_id) == (None, None) and executor.leases.held() == {}


class BrokenDecoderRuntime(toy_runtime.ToyRuntime):
    """The toy, except that its decoder crashes: a bug inside the job's stages."""

    def decode(self, latents, tiling: bool = False):
        raise RuntimeError("decoder crashed")


def test_a_bug_inside_the_stages_fails_the_job_and_the_worker_runs_the_next(store, models):  # noqa: F811
    registry = ModelRegistry(lambda m, v: BrokenDecoderRuntime(m, v or "1"), max_batch=4, wait_ms=1)
    try:
        executor = executor_of(store, registry)
        job_id = submit(store, steps=2)
        assert executor.run(job_id) == JobState.FAILED
        record = store.get(job_id)
        assert (record.attempt, record.error_code, record.error_message) == (
            1, ErrorCode.INTERNAL, "RuntimeError: decoder crashed")
        assert lease_of(store, job_id) == (None, None)
    finally:
        registry.close()
    assert executor_of(store, models).run(submit(store, steps=2)) == JobState.SUCCEEDED


def test_a_deadline_passed_before_the_start_expires_the_job_with_no_attempt(store, executor):  # noqa: F811
    job_id = submit(store, deadline=1.0)
    assert executor.run(job_id) == JobState.EXPIRED
    record = store.get(job_id)
    assert (record.attempt, record.error_code, record.error_message) == (
        0, ErrorCode.NONE, "deadline passed before the job started")
    assert lease_of(store, job_id) == (None, None)


def test_a_model_that_cannot_load_fails_the_job_with_the_loader_s_reason(store):  # noqa: F811
    def loader(model, version):
        raise FileNotFoundError("no manifest.json")

    registry = ModelRegistry(loader, max_batch=4, wait_ms=1)
    job_id = submit(store, steps=2)
    assert executor_of(store, registry).run(job_id) == JobState.FAILED
    record = store.get(job_id)
    assert (record.attempt, record.error_code, record.error_message) == (
        0, ErrorCode.MODEL_UNAVAILABLE, "model toy/1 is unavailable: no manifest.json")


def test_a_dataset_job_s_hard_limit_counts_from_the_start_of_each_shard(store, models, tmp_path):  # noqa: F811
    # A dataset job may run for hours: its hard limit holds per shard (services/worker/watchdog.py).
    now, lock = [0.0], threading.Lock()
    executor = JobExecutor(store, models, Settings.from_env({}, default_model="toy", progress_interval_ms=0,
                                                            dataset_dir=tmp_path), name="test-worker")
    executor.watchdog = HardLimitWatchdog(0.5, lambda stuck: None, clock=lambda: now[0])

    def look():  # one clock second a check; how long the attempt has run by the watchdog's count
        with lock:
            now[0] += 1.0
            return max(s.seconds for s in executor.watchdog.stuck())

    seen = during_sampling(executor, look)
    job_id = store.create("acme", toy_runtime.planned(test_dataset_jobs.dataset_spec("limited")))[0]
    assert executor.run(job_id) == JobState.SUCCEEDED, store.get(job_id).error_message
    restarts = sum(later < earlier for earlier, later in zip(seen, seen[1:], strict=False))
    assert restarts == 2  # shards 1 and 2 of 3 began after checks in shard 0 (which began as the attempt did)


def test_a_running_job_is_busy_and_tracked_by_the_watchdog_only_while_it_runs(store, executor):  # noqa: F811
    later = [0.0]
    executor.watchdog = HardLimitWatchdog(10, lambda stuck: None, clock=lambda: later[0])
    job_id = submit(store, steps=3)

    def look():
        later[0] += 100  # every look is past the limit
        return executor.busy, REGISTRY.get_sample_value("atelier_worker_busy_slots"), executor.watchdog.stuck()

    seen = during_sampling(executor, look)
    assert executor.run(job_id) == JobState.SUCCEEDED
    busy, gauge, stuck = seen[0]
    assert (busy, gauge) == (1, 1.0)
    assert [(s.job.job_id, s.attempt) for s in stuck] == [(job_id, 1)]
    assert (executor.busy, REGISTRY.get_sample_value("atelier_worker_busy_slots")) == (0, 0.0)
    assert executor.watchdog.stuck() == []


def test_the_cancel_listener_alone_stops_a_job(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1, 2), steps=6)
    executor.cancelled = lambda asked: asked == job_id  # heard on the channel; Redis still says RUNNING
    assert executor.run(job_id) == JobState.RUNNING
    record = store.get(job_id)
    assert (record.steps_done, record.images_done) == (0, 0)
    assert lease_of(store, job_id) == (None, None)


def test_queue_wait_is_observed_once_per_job_under_its_queue(store, executor):  # noqa: F811
    def waits():
        return REGISTRY.get_sample_value("atelier_job_queue_seconds_count", {"queue": Priority.BATCH}) or 0.0

    before = waits()
    job_id = submit(store, steps=2, priority=Priority.BATCH)
    executor.stop_event = threading.Event()
    during_sampling(executor, executor.stop_event.set)
    with pytest.raises(WorkerShuttingDown):
        executor.run(job_id)  # attempt 1, handed back
    assert waits() - before == 1.0
    executor.stop_event = None
    executor.cancelled = None
    assert executor.run(job_id) == JobState.SUCCEEDED  # attempt 2 waited too, but the job is counted once
    assert waits() - before == 1.0


def test_a_measured_job_records_its_row_times_and_reports_them(store, executor):  # noqa: F811
    reported = []
    executor.on_measured = reported.append
    job_id = submit(store, seeds=(1, 2), steps=3)
    assert executor.run(job_id) == JobState.SUCCEEDED
    age = time.time() - store.get(job_id).created_at  # the whole job took less than this
    measured = executor.row_times.snapshot()
    assert set(measured) == {"toy/1"} and set(measured["toy/1"]) == {cost.size_key(16, 16)}
    row = measured["toy/1"]["16x16"]
    assert row["row"] > 0 and 0 <= row["fixed"] < age
    assert reported == [measured]


def test_a_redelivered_job_is_not_measured(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1, 2), steps=3)
    attempt = store.begin_attempt(job_id, "lost-worker")
    store.add_artifact(job_id, attempt, ev.Artifact(index=0, seed=1), b"from the lost worker")
    assert executor.run(job_id) == JobState.SUCCEEDED
    assert store.artifact_bytes(job_id, 0) == b"from the lost worker"
    assert executor.row_times.snapshot() == {}


def test_a_whole_job_s_time_is_measured_and_a_dataset_attempt_s_only_when_it_made_every_shard(store, models,  # noqa: F811
                                                                                            tmp_path):
    # A job's ETA is made of the measured ones (services/common/cost.py): a part-made job would pass for a quick one.
    def measured_after(job_id: str) -> bool:
        executor = JobExecutor(store, models, Settings.from_env({}, default_model="toy", progress_interval_ms=0,
                                                                dataset_dir=tmp_path), name="test-worker")
        reported = []
        executor.on_measured = reported.append
        assert executor.run(job_id) == JobState.SUCCEEDED, store.get(job_id).error_message
        return bool(reported)

    whole = store.create("acme", toy_runtime.planned(test_dataset_jobs.dataset_spec("whole")))[0]
    resumed = store.create("acme", toy_runtime.planned(test_dataset_jobs.dataset_spec("resumed")))[0]
    lost = store.begin_attempt(resumed, "lost-worker")
    assert store.add_shard(resumed, lost, shard_info(0, b"the lost worker's shard", 5, lost))
    again = submit(store, seeds=(1, 2), steps=3)
    store.begin_attempt(again, "lost-worker")  # a second attempt that finds no image made: the whole job again
    assert [measured_after(j) for j in (whole, resumed, again)] == [True, False, True]


def test_a_stuck_job_fails_as_a_timeout_once_naming_both_times(store, executor):  # noqa: F811
    job_id = submit(store, steps=2)
    attempt = store.begin_attempt(job_id, "test-worker")
    stuck = StuckJob(store.get(job_id), attempt, 12.4)

    def failed():
        return REGISTRY.get_sample_value("atelier_jobs_total", {"outcome": "failed"}) or 0.0

    before = failed()
    assert executor.fail_stuck(stuck, 7.5) is True
    record = store.get(job_id)
    assert (record.state, record.error_code, record.error_message) == (
        JobState.FAILED, ErrorCode.TIMEOUT,
        "job stuck in one call for 12 s, past the hard time limit of 7.5 s; its worker restarts")
    assert executor.fail_stuck(stuck, 7.5) is False
    assert failed() - before == 1.0
    assert kinds(store, job_id)[-1] == EventKind.FINISHED


def test_a_stuck_attempt_that_was_superseded_fails_nothing(store, executor):  # noqa: F811
    job_id = submit(store, steps=2)
    first = store.begin_attempt(job_id, "test-worker")
    stuck = StuckJob(store.get(job_id), first, 30.0)
    assert store.begin_attempt(job_id, "another-worker") == first + 1  # the job was handed back and taken
    assert executor.fail_stuck(stuck, 10) is False
    record = store.get(job_id)
    assert (record.state, record.attempt, record.error_code) == (JobState.RUNNING, 2, ErrorCode.NONE)


def test_an_outcome_is_counted_with_its_latency_under_its_queue(store, executor):  # noqa: F811
    def latencies():
        labels = {"queue": Priority.BATCH, "outcome": "succeeded"}
        return (REGISTRY.get_sample_value("atelier_job_latency_seconds_count", labels) or 0.0,
                REGISTRY.get_sample_value("atelier_job_latency_seconds_sum", labels) or 0.0)

    count, total = latencies()
    job_id = submit(store, steps=2, priority=Priority.BATCH)
    assert executor.run(job_id) == JobState.SUCCEEDED
    latest = time.time() - store.get(job_id).created_at  # no later than now: at most this long
    assert latencies()[0] - count == 1.0
    assert 0.0 <= latencies()[1] - total <= latest


def test_an_attempt_begins_under_its_worker_s_name_provider_and_lease(store, executor):  # noqa: F811
    job_id = submit(store, steps=2)
    assert executor.run(job_id) == JobState.SUCCEEDED
    started = next(e.data for e in store.read_events(job_id) if e.kind == EventKind.STARTED)
    assert (started["worker"], started["execution_provider"], started["attempt"]) == (
        "test-worker", "CPUExecutionProvider", 1)


def test_a_lease_lost_while_the_model_loads_begins_no_attempt(store):  # noqa: F811
    # The lease lapses during the load and another worker leases the job: this delivery's
    # attempt must not begin, the other's holds the job.
    job_id = submit(store, steps=2)
    other = Leases(store, 30, owner="other-worker")
    taken = []

    def slow_load(model, version):
        time.sleep(0.05)  # past this worker's 10 ms lease
        taken.append(other.claim(job_id))
        return toy_runtime.load(None, model, version)

    registry = ModelRegistry(slow_load, max_batch=4, wait_ms=1)
    try:
        executor = JobExecutor(store, registry, Settings.from_env({}, default_model="toy", progress_interval_ms=0,
                                                                  job_lease_seconds=0.01), name="test-worker")
        assert executor.run(job_id) == JobState.QUEUED
    finally:
        registry.close()
    record = store.get(job_id)
    assert taken[0] is not None and lease_of(store, job_id)[0] == taken[0].encode()
    assert (record.attempt, kinds(store, job_id)) == (0, ["queued"])


def test_two_jobs_at_once_are_two_busy_slots(store, executor):  # noqa: F811
    both = threading.Barrier(2, timeout=10)
    first_checks, seen = set(), []

    def look(job_id):
        if job_id not in first_checks:  # each job's first check waits until the other job runs too
            first_checks.add(job_id)
            both.wait()
            seen.append(executor.busy)
            both.wait()  # neither goes on before both have looked
        return False

    executor.cancelled = look
    jobs = [submit(store, steps=2) for _ in range(2)]
    threads = [threading.Thread(target=executor.run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert seen == [2, 2] and executor.busy == 0
    assert [store.get(j).state for j in jobs] == [JobState.SUCCEEDED] * 2


def test_queue_wait_and_sampling_time_are_observed_within_the_job_s_age(store, executor):  # noqa: F811
    def observed():
        return (REGISTRY.get_sample_value("atelier_job_queue_seconds_sum", {"queue": Priority.INTERACTIVE}) or 0.0,
                REGISTRY.get_sample_value("atelier_sampling_seconds_sum", {"model": "toy"}) or 0.0)

    before = observed()
    job_id = submit(store, steps=2)
    assert executor.run(job_id) == JobState.SUCCEEDED
    age = time.time() - store.get(job_id).created_at
    waited, sampled = (b - a for a, b in zip(before, observed(), strict=True))
    assert 0 <= waited < age and 0 < sampled < age


def test_every_image_a_job_delivers_is_recorded_under_its_tenant_for_the_retention_days(store, models):  # noqa: F811
    # LookupImage ("was this made here?") answers from these records (services/worker/delivered_images.py).
    executor = JobExecutor(store, models, Settings.from_env({}, default_model="toy", progress_interval_ms=0,
                                                            image_record_retention_days=2), name="test-worker")
    job_id = submit(store, seeds=(1, 2), steps=2, output_format="png")
    assert executor.run(job_id) == JobState.SUCCEEDED
    for artifact in [e for e in store.read_events(job_id) if e.kind == EventKind.ARTIFACT]:
        index, pixels = artifact.data["index"], artifact.data["width"] * artifact.data["height"]
        fingerprint = image_fingerprint.of_file(artifact.blob, max_pixels=pixels)
        found = [m for m in store.lookup_image("acme", fingerprint) if m.exact]
        assert [(m.job_id, m.index) for m in found] == [(job_id, index)]
        assert store.lookup_image("another-tenant", fingerprint) == []
        # Each likeness bucket keeps the record until its retention ends, counted from its creation.
        expiries = {store.client.zscore(store.phash_key("acme", band, value), fingerprint.sha256)
                    for band, value in enumerate(image_fingerprint.bands(fingerprint.phash))}
        assert expiries == {found[0].created_at + 2 * 86400}
