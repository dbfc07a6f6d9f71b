"""Worker heartbeat records on a real Redis: found through their index, never by scanning every key."""

from __future__ import annotations

import time

import pytest

from services.common import readiness
from services.common.readiness import WorkerStatus

pytestmark = pytest.mark.redis

PREFIX = "t:"


def no_scan(*args, **kwargs):
    raise AssertionError("readiness scanned the keyspace although the index names the workers")


def test_reported_workers_are_found_without_scanning_the_keyspace(redis_client, monkeypatch):
    redis_client.mset({f"{PREFIX}job:{i}": b"x" for i in range(2000)})  # a day of job records
    readiness.report(redis_client, PREFIX, WorkerStatus("w1", ("m/1",), concurrency=2), ttl=60)
    readiness.report(redis_client, PREFIX, WorkerStatus("w2", ("m/2",)), ttl=60)
    monkeypatch.setattr(redis_client, "scan_iter", no_scan)
    found = readiness.workers(redis_client, PREFIX)
    assert [w.worker for w in found] == ["w1", "w2"]
    assert found[0].concurrency == 2 and found[0].models == ("m/1",)
    assert readiness.ready_models(redis_client, PREFIX) == {"m/1", "m/2"}


def test_an_expired_worker_drops_out_of_the_index(redis_client):
    readiness.report(redis_client, PREFIX, WorkerStatus("alive", ("m/1",)), ttl=60)
    readiness.report(redis_client, PREFIX, WorkerStatus("dead", ("m/1",)), ttl=0.05)
    time.sleep(0.15)
    assert [w.worker for w in readiness.workers(redis_client, PREFIX)] == ["alive"]
    assert redis_client.smembers(readiness.index_key(PREFIX)) == {b"alive"}


def test_pruning_spares_a_worker_that_reported_again(redis_client):
    readiness.report(redis_client, PREFIX, WorkerStatus("w1"), ttl=60)
    # The reader saw w1's record missing, but w1 reported again before the prune ran.
    prune = redis_client.register_script(readiness._PRUNE)
    prune(keys=[readiness.index_key(PREFIX), readiness.worker_key(PREFIX, "w1")], args=["w1"])
    assert redis_client.smembers(readiness.index_key(PREFIX)) == {b"w1"}


def test_withdraw_removes_the_record_and_its_index_entry(redis_client):
    readiness.report(redis_client, PREFIX, WorkerStatus("w1"), ttl=60)
    readiness.withdraw(redis_client, PREFIX, "w1")
    assert readiness.workers(redis_client, PREFIX) == []
    assert not redis_client.exists(readiness.index_key(PREFIX), readiness.worker_key(PREFIX, "w1"))


def test_records_of_workers_that_write_no_index_are_still_found(redis_client):
    # A worker of a release before the index: only its record, no index entry.
    redis_client.set(readiness.worker_key(PREFIX, "old"), '{"worker": "old", "models": ["m/1"]}', px=60_000)
    assert [w.worker for w in readiness.workers(redis_client, PREFIX)] == ["old"]


def test_heartbeat_reports_and_withdraws(redis_client):
    beat = readiness.Heartbeat(redis_client, PREFIX, WorkerStatus("w1", ("m/1",)), interval=0.05).start()
    try:
        beat.update(busy=1)
        time.sleep(0.15)
        assert readiness.workers(redis_client, PREFIX)[0].busy == 1
    finally:
        beat.stop()
    assert readiness.workers(redis_client, PREFIX) == []


def test_a_snapshot_reads_redis_at_most_once_per_max_age(redis_client, monkeypatch):
    now = [100.0]
    snapshot = readiness.Snapshot(redis_client, PREFIX, max_age=1.0, clock=lambda: now[0])
    readiness.report(redis_client, PREFIX, WorkerStatus("w1", ("m/1",)), ttl=60)
    assert snapshot.ready_models() == {"m/1"}
    readiness.report(redis_client, PREFIX, WorkerStatus("w2", ("m/2",)), ttl=60)
    now[0] += 0.5
    assert snapshot.ready_models() == {"m/1"}  # still the snapshot
    now[0] += 0.5
    assert snapshot.ready_models() == {"m/1", "m/2"} and len(snapshot.workers()) == 2
