"""A dataset job's worker SIGKILLed mid-job under `atelier up` (tiny ONNX model, default lease and
time limits): the replacement worker makes only the shards the dead one had not recorded. The
shards written before the kill are never written again (same file, same inode and time), every
image is in exactly one shard, and the whole dataset is byte-identical to the same job run
without a fault."""

from __future__ import annotations

import hashlib
import json
import os
import signal

import pytest
import redis

from atelier_cli.up import EmbeddedStack
from clients import Client
from services.common.jobs import JobState
from services.common.settings import Settings
from services.common.shards import read_shard
from services.common.store import JobStore
from tests.chaos.stack import outcome, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PROMPTS = ["red apple", "blue gem", "green leaf", "yellow star"]
SEEDS = list(range(8))  # 4 prompts x 8 seeds = 32 images
SHARD_SIZE = 8  # 4 shards


def files_of(folder):
    return {p.name: p for p in folder.iterdir() if p.suffix == ".tar"}


def test_a_dataset_job_killed_mid_job_loses_at_most_its_shard_in_progress(tiny_models, tmp_path):
    datasets = tmp_path / "datasets"
    settings = Settings.from_env({}, model_repository=tiny_models, default_model="tiny", grpc_listen="127.0.0.1:0",
                                 gateway_metrics_port=0, worker_metrics_port=0, dataset_dir=datasets)
    request = {"prompts": PROMPTS, "seeds": SEEDS, "steps": 30}
    with EmbeddedStack(settings, state_dir=tmp_path / "up", worker_concurrency=2) as stack, \
            Client(stack.address, stack.api_key, timeout=10.0) as client:
        store = JobStore(redis.Redis.from_url(stack.settings.redis_url), stack.settings.key_prefix)
        job_id = client.submit(dataset={"output": "killed", "shard_size": SHARD_SIZE}, **request).job_id
        wait_until(lambda: store.get(job_id).shards_done >= 1, 120, "the first attempt's first shard")
        first = stack.worker
        os.killpg(first.pid, signal.SIGKILL)
        before = {s: store.shards(job_id)[s] for s in store.shards(job_id)}
        assert 1 <= len(before) < 4, "the job finished its shards before the kill: make it longer"
        stat_before = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in
                       files_of(datasets / "killed").items() if int(name[6:12]) in before}
        wait_until(lambda: store.get(job_id).is_final, 180, "the killed worker's job to finish")
        assert stack.worker is not first and stack.worker_restarts == 1

        seen = outcome(store, job_id)
        assert seen["state"] == JobState.SUCCEEDED and seen["finished"] == 1 and seen["attempts"] == [1, 2]
        shards = store.shards(job_id)
        assert sorted(shards) == [0, 1, 2, 3]
        assert {s: shards[s] for s in before} == before, "a shard finished before the kill was recorded again"
        assert {shards[s].attempt for s in shards if s not in before} == {2}
        folder = datasets / "killed"
        stat_after = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in files_of(folder).items()
                      if name in stat_before}
        assert stat_after == stat_before, "a shard finished before the kill was written again"
        record = store.get(job_id)
        assert (record.images_done, record.shards_done) == (32, 4)
        keys = [s.key for name in sorted(files_of(folder)) for s in read_shard((folder / name).read_bytes())]
        assert keys == [f"{i:08d}" for i in range(32)], "an image was lost or written twice"
        index = json.loads((folder / "index.json").read_text())
        assert [(s["file"], s["sha256"]) for s in index["shards"]] == [
            (name, hashlib.sha256((folder / name).read_bytes()).hexdigest()) for name in sorted(files_of(folder))]

        clean_id = client.submit(dataset={"output": "clean", "shard_size": SHARD_SIZE}, **request).job_id
        wait_until(lambda: store.get(clean_id).is_final, 180, "the clean run")
        assert store.get(clean_id).state == JobState.SUCCEEDED
        clean = datasets / "clean"
        for name in files_of(folder):
            assert (folder / name).read_bytes() == (clean / name).read_bytes(), f"{name} differs from a clean run"
