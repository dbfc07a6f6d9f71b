"""Redis restarted (AOF on, as compose and Kubernetes run it) while jobs are queued and
running: Submit answers UNAVAILABLE with RetryInfo during the outage, health says NOT_SERVING,
and once Redis is back the gateway and the workers reconnect by themselves, health recovers
and every job finishes once, with every image once."""

from __future__ import annotations

import grpc
import pytest
import redis

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import models_pb2
from clients import Client
from services.common.jobs import JobState
from services.common.store import JobStore
from services.gateway.server import serve
from tests.chaos.stack import AofRedis, Processes, outcome, stack_settings, wait_until
from tests.gateway.helpers import Stubs, auth, retry_delay

pytestmark = [pytest.mark.slow, pytest.mark.redis]

JOBS = 10
IMAGES = 4


def test_a_redis_restart_loses_and_duplicates_nothing_and_everything_reconnects(tiny_models, tmp_path):
    server = AofRedis(tmp_path / "redis")
    server.start()
    settings, key = stack_settings(server.url, tiny_models, tmp_path)
    workers = Processes(settings, tmp_path)
    gateway = None
    try:
        workers.start(concurrency=2)
        gateway = serve(settings, health_interval=0.25)
        store = JobStore(redis.Redis.from_url(server.url), settings.key_prefix)
        with Client(gateway.address, key, timeout=10.0) as client:
            wait_until(lambda: client.health() == "SERVING", 30, "health SERVING")
            jobs = [client.submit("green tree", steps=25, count=IMAGES, seeds=range(i, i + IMAGES),
                                  priority="batch" if i % 2 else "interactive").job_id for i in range(JOBS)]

            def running_and_waiting() -> bool:
                records = [store.get(j) for j in jobs]
                states = {r.state for r in records}
                return {JobState.RUNNING, JobState.QUEUED} <= states and any(r.images_done for r in records)

            wait_until(running_and_waiting, 60, "jobs running and waiting, some images written", interval=0.01)

            server.stop()
            stubs = Stubs(gateway.address)
            calls = {
                "Submit": lambda: stubs.gen.Submit(gen.GenerateRequest(prompt="red apple"), metadata=auth(key),
                                                   timeout=20),
                "GetJob": lambda: stubs.gen.GetJob(gen.GetJobRequest(job_id=jobs[0]), metadata=auth(key), timeout=20),
                "Watch": lambda: list(stubs.gen.Watch(gen.WatchRequest(job_id=jobs[0]), metadata=auth(key),
                                                      timeout=20)),
                "CancelJob": lambda: stubs.gen.CancelJob(gen.CancelJobRequest(job_id=jobs[-1]), metadata=auth(key),
                                                         timeout=20),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, (name, refused.value.details())
                assert retry_delay(refused.value) > 0, name

            def listed() -> list[tuple[str, bool]]:  # answers throughout: the catalog is on disk
                found = stubs.models.ListModels(models_pb2.ListModelsRequest(), metadata=auth(key), timeout=20)
                return [(m.name, m.ready) for m in found.models]

            wait_until(lambda: listed() == [("tiny", False)], 10, "ListModels to show the model not ready")
            stubs.close()
            wait_until(lambda: client.health() == "NOT_SERVING", 10, "health NOT_SERVING during the outage")

            server.start()
            wait_until(lambda: client.health() == "SERVING", 30, "health SERVING after the restart")
            late = client.submit("red apple", steps=3).job_id
            for job_id in [*jobs, late]:
                wait_until(lambda j=job_id: store.get(j).is_final, 90, f"job {job_id} to finish\n{workers.logs()}")
            for job_id in jobs:
                seen = outcome(store, job_id)
                assert seen["state"] == JobState.SUCCEEDED and seen["finished"] == 1, seen
                assert seen["deliveries"] == {i: 1 for i in range(IMAGES)}, seen
            assert store.get(late).state == JobState.SUCCEEDED
    finally:
        if gateway is not None:
            gateway.stop(grace=0)
        workers.close()
        server.close()
