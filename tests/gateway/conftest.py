"""A real gateway on a loopback port against the test Redis, with a SCRIPTED stand-in worker.

No model runs here and no worker process starts: `ScriptedWorker` takes the ids the gateway
enqueues and writes a script of events through the real job store (started, progress, a
preview, a fixed SCRIPTED_IMAGE_SIDE-pixel red PNG per image, finished), the way services.worker
does, so the gateway's streams, cancellation, admission and metrics are tested fast. What these
tests do not show is that a real worker draws a real image: the end-to-end tests on the real
worker and the shipped model are in tests/clients (`real_stack`, tests/clients/real_stack.py)
and tests/gateway/test_end_to_end.py (a real worker process on a numpy toy model).
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import time
from dataclasses import dataclass, field

import pytest
import redis as redis_lib
from PIL import Image

from repository.manifest import FileEntry, Manifest, SizeSpec
from services.common import events as ev
from services.common import readiness
from services.common.jobs import JobState
from services.common.settings import Settings
from services.common.store import JobStore
from services.gateway.auth import add_key
from services.gateway.server import serve

MODEL = "test-model"
STYLES = ("google", "twitter")
SCRIPTED_IMAGE_SIDE = 8  # every image the scripted worker "draws" is this many pixels square


def png_bytes(width: int, height: int, mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), (200, 30, 30, 255)[: len(mode)]).save(buf, format="PNG")
    return buf.getvalue()


def write_model(root, name: str = MODEL, version: str = "1") -> None:
    folder = root / name / version
    folder.mkdir(parents=True)
    blob = b"not really onnx"
    (folder / "vae_encoder.onnx").write_bytes(blob)
    manifest = Manifest(
        name=name,
        version=version,
        description="a test model",
        styles=STYLES,
        sizes=SizeSpec(max_side=1024, other_sizes=True),  # the gateway's own limit (max_side) decides
        components={"vae_encoder": "vae_encoder.onnx"},
        files={"vae_encoder.onnx": FileEntry(hashlib.sha256(blob).hexdigest(), len(blob), role="vae_encoder")},
    )
    (folder / "manifest.json").write_text(manifest.to_json())


@dataclass
class Keys:
    path: object
    alice: str
    bob: str


@pytest.fixture
def keys(tmp_path) -> Keys:
    path = tmp_path / "keys.json"
    _, alice = add_key(path, "alice")
    _, bob = add_key(path, "bob")
    return Keys(path, alice, bob)


@pytest.fixture
def model_repo(tmp_path):
    root = tmp_path / "models"
    write_model(root)
    return root


class RecordingQueue:
    """The `enqueue` callable: remembers (job id, queue) for the scripted worker."""

    def __init__(self):
        self.items: queue.Queue = queue.Queue()
        self.sent: list[tuple[str, str]] = []

    def __call__(self, job_id: str, queue_name: str) -> None:
        self.sent.append((job_id, queue_name))
        self.items.put(job_id)


@dataclass
class ScriptedWorker:
    """A stand-in for the worker, not the worker: runs each enqueued job through the store as a
    script (started, progress x steps, preview, a fixed red PNG per image, finished)."""

    store: JobStore
    jobs: RecordingQueue
    step_delay: float = 0.0
    steps: int = 3
    _threads: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run_one(self, timeout: float = 5.0) -> str:
        job_id = self.jobs.items.get(timeout=timeout)
        self.run(job_id)
        return job_id

    def run(self, job_id: str) -> str:
        record = self.store.get(job_id)
        attempt = self.store.begin_attempt(job_id, "scripted@test", "CPUExecutionProvider")
        if attempt is None:
            return self.store.get(job_id).state
        total = self.steps * record.images_total
        done = 0
        for index in range(record.images_total):
            for _ in range(self.steps):
                if self._stop.is_set() or not self.store.still_running(job_id, attempt):
                    return self.store.get(job_id).state
                time.sleep(self.step_delay)
                done += 1
                self.store.append_event(job_id, attempt, ev.Progress(done, total, 0.01 * (total - done), index),
                                        updates={"steps_done": done})
            self.store.append_event(job_id, attempt, ev.Preview(4, 4, index, done), blob=b"\xff\xd8jpeg")
            seed = record.spec.seeds[index % len(record.spec.seeds)]
            provenance = ev.Provenance(model_name=record.spec.model, sampler="dpmpp_2m", steps=self.steps, seed=seed)
            side = SCRIPTED_IMAGE_SIDE
            self.store.add_artifact(job_id, attempt, ev.Artifact(index, "image/png", side, side, seed,
                                                                 provenance=provenance), png_bytes(side, side))
        self.store.finish(job_id, attempt, JobState.SUCCEEDED)
        return JobState.SUCCEEDED

    def start(self) -> ScriptedWorker:
        def loop():
            while not self._stop.is_set():
                try:
                    job_id = self.jobs.items.get(timeout=0.1)
                except queue.Empty:
                    continue
                self.run(job_id)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)


def gateway_settings(redis_url, keys, model_repo, **overrides) -> Settings:
    values = dict(
        redis_url=redis_url,
        grpc_listen="127.0.0.1:0",
        gateway_metrics_port=0,
        api_keys_file=keys.path,
        model_repository=model_repo,
        default_model=MODEL,
        max_side=256,
        shutdown_grace_seconds=1.0,
        gateway_threads=32,
    )
    values.update(overrides)
    return Settings(**values)


@dataclass
class Stack:
    """A real gateway and the scripted stand-in worker that runs what it enqueues."""

    gateway: object
    store: JobStore
    queue: RecordingQueue
    worker: ScriptedWorker
    redis: redis_lib.Redis
    keys: Keys

    @property
    def address(self) -> str:
        return self.gateway.address


@pytest.fixture
def make_stack(redis_url, keys, model_repo):
    """Start a real gateway (with settings overrides) and a SCRIPTED stand-in worker, stopped
    unless `start_worker`; no model runs."""
    made = []

    def make(start_worker: bool = False, ready: bool = True, **overrides) -> Stack:
        settings = gateway_settings(redis_url, keys, model_repo, **overrides)
        client = redis_lib.Redis.from_url(redis_url)
        if ready:
            readiness.report(client, settings.key_prefix,
                             readiness.WorkerStatus("scripted@test", (f"{MODEL}/1",), concurrency=2), ttl=60)
        jobs = RecordingQueue()
        gateway = serve(settings, enqueue=jobs, health_interval=0.2, poll_seconds=0.2)
        store = JobStore(client, settings.key_prefix, settings.result_ttl_seconds)
        worker = ScriptedWorker(store, jobs)
        stack = Stack(gateway, store, jobs, worker, client, keys)
        made.append(stack)
        if start_worker:
            worker.start()
        return stack

    yield make
    for stack in made:
        stack.worker.stop()
        stack.gateway.stop(grace=0.5)
        stack.redis.close()


@pytest.fixture
def stack(make_stack) -> Stack:
    """A real gateway whose scripted stand-in worker is not started (tests run its jobs by hand)."""
    return make_stack()


@pytest.fixture
def model_repo_two(tmp_path):
    """The test model plus a fixed-size model without an image encoder."""
    root = tmp_path / "models2"
    write_model(root)
    folder = root / "fixed-model" / "3"
    folder.mkdir(parents=True)
    from repository.manifest import LatentSpec

    manifest = Manifest(name="fixed-model", version="3", latent=LatentSpec(dynamic_size=False))
    (folder / "manifest.json").write_text(manifest.to_json())
    return root
