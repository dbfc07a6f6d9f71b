"""Real Celery worker processes (`atelier worker`, thread pool) against the test Redis.

The model is the numpy toy of tests/services/toy_runtime.py, loaded through
ATELIER_RUNTIME_LOADER; ATELIER_TOY_CALL_SECONDS slows its denoiser so jobs can be caught
mid-run. Time limits and the visibility timeout are shrunk so a lost job comes back in
seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import redis
from celery import Celery

from services.common import readiness
from services.common.embedded_redis import free_port
from services.common.events import EventKind
from services.common.jobs import ErrorCode, JobSpec, JobState, PromptSpec
from services.common.queues import celery_config, enqueue
from services.common.settings import Settings
from services.common.store import JobStore
from services.worker.executor import JobExecutor
from services.worker.models import ModelRegistry
from services.worker.watchdog import EXIT_HARD_LIMIT
from tests.services import toy_runtime

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "t:"
VISIBILITY_TIMEOUT = 6


class Workers:
    """Starts `atelier worker` processes; kills every one it started at teardown."""

    def __init__(self, redis_url: str, tmp_path: Path):
        self.redis_url, self.tmp_path = redis_url, tmp_path
        self.procs: list[subprocess.Popen] = []
        self.client = redis.Redis.from_url(redis_url)

    def start(self, concurrency: int = 2, call_seconds: float = 0.0, metrics_port: int = 0,
              **settings: str) -> subprocess.Popen:
        env = dict(
            os.environ,
            ATELIER_REDIS_URL=self.redis_url,
            ATELIER_KEY_PREFIX=PREFIX,
            ATELIER_RUNTIME_LOADER="tests.services.toy_runtime:load",
            ATELIER_DEFAULT_MODEL="toy",
            ATELIER_WORKER_METRICS_PORT=str(metrics_port),
            ATELIER_TASK_SOFT_TIME_LIMIT="4",
            ATELIER_TASK_TIME_LIMIT="5",
            ATELIER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
            ATELIER_PROGRESS_INTERVAL_MS="0",
            ATELIER_BATCH_WAIT_MS="5",
            ATELIER_TOY_CALL_SECONDS=str(call_seconds),
            ATELIER_LOG_LEVEL="INFO",
            OMP_NUM_THREADS="1",
        )
        env.update({f"ATELIER_{k.upper()}": v for k, v in settings.items()})
        n = len(self.procs)
        log = open(self.tmp_path / f"worker{n}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "atelier_cli", "worker", "--concurrency", str(concurrency),
             "--hostname", f"w{n}-{os.getpid()}@test"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while not any(w.worker.endswith(f":{proc.pid}") for w in readiness.workers(self.client, PREFIX)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + self.log(n))
            time.sleep(0.1)
        time.sleep(0.3)  # worker_ready fires as consuming begins
        return proc

    def log(self, n: int) -> str:
        return (self.tmp_path / f"worker{n}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.client.close()


@pytest.fixture
def workers(redis_url, tmp_path):
    w = Workers(redis_url, tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, key_prefix=PREFIX, result_ttl_seconds=600)


@pytest.fixture
def sender(redis_url):
    app = Celery("atelier-test")
    app.conf.update(celery_config(Settings.from_env({}, redis_url=redis_url, visibility_timeout=VISIBILITY_TIMEOUT,
                                                     task_time_limit=5, task_soft_time_limit=4)))
    yield app
    app.close()


def submit(store, sender, queue="interactive", **changes) -> str:
    spec = JobSpec(prompts=(PromptSpec("a blue gem", "", "flat"),), seeds=(3,), output_format="raw_rgba8",
                   priority=queue).with_(**changes)
    job_id, _ = store.create("acme", toy_runtime.planned(spec))
    enqueue(sender, job_id, queue)
    return job_id


def wait_finished(store, job_id, timeout=30.0):
    events = list(store.follow_events(job_id, block_ms=200, timeout=timeout))
    assert events and events[-1].kind == EventKind.FINISHED, f"job {job_id} did not finish: {events[-1:]}"
    return events


def wait_steps(store, job_id, steps, timeout=20.0):
    deadline = time.monotonic() + timeout
    while store.get(job_id).steps_done < steps:
        assert time.monotonic() < deadline, "job made no progress"
        time.sleep(0.02)


def solo_image(spec_changes) -> np.ndarray:
    """The job's first image made in this process, alone."""
    spec = JobSpec(prompts=(PromptSpec("a blue gem", "", "flat"),), seeds=(3,), output_format="raw_rgba8")
    data, blob = toy_runtime.made_alone(spec.with_(**spec_changes))[0]
    return np.frombuffer(blob, np.uint8).reshape(data["height"], data["width"], 4)


def image_of(events) -> np.ndarray:
    (art,) = [e for e in events if e.kind == EventKind.ARTIFACT]
    return np.frombuffer(art.blob, np.uint8).reshape(art.data["height"], art.data["width"], 4)


def test_jobs_run_on_a_worker_share_denoiser_calls_and_match_their_solo_images(workers, store, sender):
    port = free_port()
    workers.start(concurrency=2, call_seconds=0.01, metrics_port=port, batching="on")
    a = submit(store, sender, sampler="euler", steps=12)
    b = submit(store, sender, sampler="dpmpp_2m", steps=9, seeds=(8,))
    ev_a, ev_b = wait_finished(store, a), wait_finished(store, b)
    assert ev_a[-1].data["state"] == ev_b[-1].data["state"] == JobState.SUCCEEDED
    kinds = [e.kind for e in ev_a]
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "finished" and kinds.count("artifact") == 1
    assert np.array_equal(image_of(ev_a), solo_image({"sampler": "euler", "steps": 12}))
    assert np.array_equal(image_of(ev_b), solo_image({"sampler": "dpmpp_2m", "steps": 9, "seeds": (8,)}))
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets = {line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
               for line in scrape.splitlines() if line.startswith("atelier_denoiser_batch_rows_bucket")}
    assert buckets["+Inf"] > buckets["2.0"], "no denoiser call carried both jobs' rows"
    assert 'atelier_jobs_total{outcome="succeeded"} 2.0' in scrape
    assert 'atelier_queue_depth{queue="batch"} 0.0' in scrape


def test_a_killed_worker_s_job_is_finished_exactly_once_by_another(workers, store, sender):
    first = workers.start(concurrency=1, call_seconds=0.04)
    job_id = submit(store, sender, steps=40, guidance_scale=1.0, seeds=(1, 2))
    wait_steps(store, job_id, 6)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert store.get(job_id).state == JobState.RUNNING
    workers.start(concurrency=1, call_seconds=0.01)
    events = wait_finished(store, job_id, timeout=VISIBILITY_TIMEOUT + 20)
    job = store.get(job_id)
    assert job.state == JobState.SUCCEEDED and job.attempt == 2 and job.images_done == 2
    assert sorted(e.data["index"] for e in events if e.kind == EventKind.ARTIFACT) == [0, 1]
    assert [e.data["attempt"] for e in events if e.kind == EventKind.STARTED] == [1, 2]
    assert [e.kind for e in events].count(EventKind.FINISHED) == 1


def test_sigterm_hands_a_running_job_back_at_once(workers, store, sender):
    first = workers.start(concurrency=1, call_seconds=0.04)
    job_id = submit(store, sender, steps=40, guidance_scale=1.0)
    wait_steps(store, job_id, 4)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=10)
    workers.start(concurrency=1, call_seconds=0.0)
    started = time.monotonic()
    events = wait_finished(store, job_id, timeout=20)
    assert time.monotonic() - started < VISIBILITY_TIMEOUT, "the job waited for the visibility timeout"
    assert events[-1].data["state"] == JobState.SUCCEEDED and store.get(job_id).attempt == 2


def test_a_job_stuck_past_the_hard_limit_fails_and_its_worker_hands_the_rest_back_and_exits(workers, store,
                                                                                             sender):
    """The thread pool's hard time limit (services/worker/watchdog.py): a call that never returns."""
    first = workers.start(concurrency=2, call_seconds=0.04, task_soft_time_limit="5", task_time_limit="6",
                          visibility_timeout="8")
    stuck = submit(store, sender, model="toy-hang")
    deadline = time.monotonic() + 20
    while store.get(stuck).state != JobState.RUNNING:
        assert time.monotonic() < deadline, "the stuck job never started"
        time.sleep(0.05)
    time.sleep(4.0)  # the healthy job starts late enough to stay well inside its own soft limit
    healthy = submit(store, sender, steps=400, guidance_scale=1.0)
    wait_steps(store, healthy, 2)
    assert first.wait(timeout=30) == EXIT_HARD_LIMIT
    job = store.get(stuck)
    assert (job.state, job.error_code) == (JobState.FAILED, ErrorCode.TIMEOUT)
    assert "past the hard time limit of 6 s" in job.error_message
    assert store.get(healthy).state == JobState.QUEUED  # handed back unfinished, not failed
    workers.start(concurrency=1, call_seconds=0.0)
    started = time.monotonic()
    assert wait_finished(store, healthy, timeout=20)[-1].data["state"] == JobState.SUCCEEDED
    assert time.monotonic() - started < 8, "the handed-back job waited for the visibility timeout"
    assert store.get(healthy).attempt == 2


def test_cancel_and_deadline_on_a_worker(workers, store, sender):
    workers.start(concurrency=2, call_seconds=0.03)
    expired = submit(store, sender, deadline=time.time() - 1)
    long = submit(store, sender, steps=100, guidance_scale=1.0)
    wait_steps(store, long, 3)
    assert store.cancel(long) == (JobState.CANCELLED, True)
    steps_at_cancel = store.get(long).steps_done
    events = wait_finished(store, long)
    assert events[-1].data["state"] == JobState.CANCELLED
    assert not [e for e in events if e.kind == EventKind.ARTIFACT]
    assert [e.kind for e in wait_finished(store, expired)] == ["queued", "finished"]
    assert store.get(expired).state == JobState.EXPIRED
    after = submit(store, sender, steps=3)
    assert wait_finished(store, after)[-1].data["state"] == JobState.SUCCEEDED  # the worker carries on
    time.sleep(0.2)
    assert store.get(long).steps_done <= steps_at_cancel + 1


def test_interactive_jobs_overtake_queued_batch_jobs(workers, store, sender):
    workers.start(concurrency=1, call_seconds=0.02)
    batch = [submit(store, sender, queue="batch", steps=8, guidance_scale=1.0) for _ in range(4)]
    wait_steps(store, batch[0], 1)
    interactive = submit(store, sender, queue="interactive", steps=8, guidance_scale=1.0)
    for job_id in batch + [interactive]:
        wait_finished(store, job_id)
    order = sorted(batch + [interactive], key=lambda j: store.get(j).started_at)
    assert order.index(interactive) == 1, "the interactive job waited behind batch jobs"


def test_in_process_executor_agrees_with_the_solo_helper(redis_client):
    # Guards the helper above: the executor path and the bare pipeline give the same image.
    st = JobStore(redis_client, key_prefix="x:")
    registry = ModelRegistry(lambda m, v: toy_runtime.load(None, m, v))
    ex = JobExecutor(st, registry, Settings.from_env({}, default_model="toy"))
    job_id, _ = st.create("acme", toy_runtime.planned(JobSpec(prompts=(PromptSpec("a blue gem", "", "flat"),),
                                                              seeds=(3,), output_format="raw_rgba8", steps=5)))
    ex.run(job_id)
    registry.close()
    assert np.array_equal(image_of(st.read_events(job_id)), solo_image({"steps": 5}))
