"""The Python SDK, sync and asyncio, against a real gateway: results, errors, automatic resume.

Most tests run the gateway with the SCRIPTED stand-in worker (`make_stack`, `stack`: fixed 8x8
PNGs, no model), which is fast and tests the SDK's handling of streams and errors;
`test_sdk_end_to_end_on_the_shipped_model` runs against the real stack (`real_stack`: a real worker
process serving the shipped ONNX model) and checks the images themselves.
"""

import asyncio
import threading
import time

import numpy as np
import pytest
import redis as redis_lib

from atelier.v1 import types_pb2
from clients import (
    AsyncClient,
    Client,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    build_request,
)
from clients.requests import sampler_value
from services.common.embedded_redis import free_port
from services.common.store import JobStore
from services.gateway.server import serve
from tests.clients.deadlines import SCRIPTED_SECONDS, call_within, within
from tests.clients.real_stack import EMOJI_JOB, JOB_SECONDS, assert_different_images, assert_emoji, pixels
from tests.gateway.conftest import gateway_settings

pytestmark = pytest.mark.redis


def kinds(events):
    return [e.WhichOneof("event") for e in events]


def test_sync_client_end_to_end(make_stack):
    stack = make_stack(start_worker=True)
    with Client(stack.address, stack.keys.alice) as c:
        assert c.health() == "SERVING"
        (model,) = c.list_models()
        assert model.name == "test-model" and model.ready
        events = within(c.generate("a red fox", style="google", seeds=[3, 4], sampler="euler", steps=5))
        assert kinds(events)[0] == "queued" and kinds(events)[-1] == "finished"
        assert [e.artifact.seed for e in events if e.HasField("artifact")] == [3, 4]
        job = c.get(events[0].job_id)
        assert job.state == types_pb2.JOB_STATE_SUCCEEDED and job.request_id  # the SDK made it idempotent
        handle = c.submit("a blue gem", count=2, priority="batch")
        assert len(handle.seeds) == 2
        watched = within(c.watch(handle.job_id))
        assert watched[-1].finished.state == types_pb2.JOB_STATE_SUCCEEDED
        assert within(c.watch(handle.job_id, watched[2].id)) == watched[3:]


@pytest.mark.slow
def test_sdk_end_to_end_on_the_shipped_model(real_stack):
    """A real worker process draws the shipped model's images: native size, an emoji's alpha,
    one image per seed whatever its place in the job, and provenance that says how to redo it."""
    with Client(real_stack.address, real_stack.api_key) as c:
        alone = within(c.generate(**EMOJI_JOB, seeds=[7]), JOB_SECONDS)
        pair = within(c.generate(**EMOJI_JOB, seeds=[8, 7]), JOB_SECONDS)
    assert alone[-1].finished.state == pair[-1].finished.state == types_pb2.JOB_STATE_SUCCEEDED
    assert alone[0].job_id != pair[0].job_id
    (seven,) = [e.artifact for e in alone if e.HasField("artifact")]
    eight, seven_again = [e.artifact for e in pair if e.HasField("artifact")]
    assert [seven.seed, eight.seed, seven_again.seed] == [7, 8, 7]
    native = (real_stack.manifest.image.width, real_stack.manifest.image.height)
    for artifact in (seven, eight, seven_again):
        assert artifact.mime_type == "image/png" and (artifact.width, artifact.height) == native
        assert_emoji(artifact.data, real_stack.manifest)
    # The same seed, alone or second in an unsorted job: the same pixels (each file is signed anew).
    np.testing.assert_array_equal(pixels(seven_again.data), pixels(seven.data))
    assert_different_images(seven.data, eight.data)
    p = seven_again.provenance
    assert (p.model_name, p.model_version, p.model_sha256) == \
        (real_stack.model, real_stack.version, real_stack.model_sha256)
    assert (p.prompt, p.negative_prompt, p.style, p.seed) == (EMOJI_JOB["prompt"], "", EMOJI_JOB["style"], 7)
    assert (p.sampler, p.steps) == (sampler_value(EMOJI_JOB["sampler"]), EMOJI_JOB["steps"])
    assert (p.width, p.height) == native
    assert p.guidance_scale == pytest.approx(real_stack.manifest.defaults.guidance_scale)  # none asked: the model's


def test_errors_are_clear_exceptions(make_stack):
    stack = make_stack(tenant_jobs_per_minute=1)
    with Client(stack.address, stack.keys.alice) as c:
        with pytest.raises(InvalidArgument) as bad:
            c.submit("", width=30, steps=10_000)
        assert {v.field for v in bad.value.violations} == {"prompt", "width", "steps"}
        assert "width" in str(bad.value)
        c.submit("one")
        with pytest.raises(ResourceExhausted) as full:
            c.submit("two")
        assert 0 < full.value.retry_after <= 60
        with pytest.raises(NotFound):
            c.get("f" * 32)
    with Client(stack.address, "atk_no_such") as c, pytest.raises(Unauthenticated):
        c.list_models()
    with Client(f"127.0.0.1:{free_port()}", stack.keys.alice, timeout=2, retries=1) as c, \
            pytest.raises(Unavailable):
        c.get("x")


def test_submit_is_idempotent_with_a_request_id(stack):
    with Client(stack.address, stack.keys.alice) as c:
        request = build_request("a fox", seeds=[9], request_id="once")
        a, b = c.submit(request=request), c.submit(request=request)
        assert a.job_id == b.job_id and b.existing


def _serve_again(settings, jobs, patience: float = 10.0):
    """A new gateway on the same port (which the old one may take a moment to release)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return serve(settings, enqueue=jobs, poll_seconds=0.1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_watch_resumes_by_itself_across_a_gateway_restart(redis_url, keys, model_repo):
    port = free_port()
    settings = gateway_settings(redis_url, keys, model_repo, grpc_listen=f"127.0.0.1:{port}")
    from tests.gateway.conftest import RecordingQueue, ScriptedWorker

    jobs = RecordingQueue()
    first = serve(settings, enqueue=jobs, poll_seconds=0.1)
    second = None
    try:
        with Client(first.address, keys.alice, retries=30) as c:
            handle = c.submit("a fox", seeds=[1, 2], preview_every_steps=1)
            # The worker's own Redis connection: the first gateway's closes when it stops.
            store = JobStore(redis_lib.Redis.from_url(redis_url), settings.key_prefix)
            worker = ScriptedWorker(store, jobs, step_delay=0.05, steps=10)
            runner = threading.Thread(target=worker.run_one)
            runner.start()
            seen = []

            def follow() -> None:
                nonlocal second
                for event in c.watch(handle.job_id):
                    seen.append(event)
                    if len(seen) == 4:  # the gateway goes away mid-stream, and comes back
                        first.stop(grace=0)
                        second = _serve_again(settings, jobs)

            call_within(follow, what=lambda: f"watching across the restart (at {len(seen)} events)")
            runner.join(SCRIPTED_SECONDS)
            assert not runner.is_alive(), "the scripted worker did not finish the job"
            store.client.close()
            full = within(c.watch(handle.job_id))
        assert second is not None
        assert [e.id for e in seen] == [e.id for e in full]  # nothing missed, nothing repeated
        assert kinds(seen)[-1] == "finished"
    finally:
        first.stop(grace=0)
        if second:
            second.stop(grace=0)


def test_async_client(make_stack):
    stack = make_stack(start_worker=True)

    async def main():
        async with AsyncClient(stack.address, stack.keys.alice) as c:
            assert await c.health() == "SERVING"
            assert [m.name for m in await c.list_models()] == ["test-model"]
            events = [e async for e in c.generate("a red fox", seeds=[5])]
            assert kinds(events)[-1] == "finished" and events[-1].finished.images == 1
            handle = await c.submit("a gem", seeds=[6])
            watched = [e async for e in c.watch(handle.job_id)]
            assert watched[-1].finished.state == types_pb2.JOB_STATE_SUCCEEDED
            assert (await c.get(handle.job_id)).images_done == 1
            assert not (await c.cancel(handle.job_id)).cancelled
            with pytest.raises(InvalidArgument) as bad:
                await c.submit("x", steps=10_000)
            assert [v.field for v in bad.value.violations] == ["steps"]
            with pytest.raises(NotFound):
                await c.get("0" * 32)
        async with AsyncClient(stack.address, "atk_a_b") as c:
            with pytest.raises(Unauthenticated):
                await c.get("x")

    asyncio.run(asyncio.wait_for(main(), SCRIPTED_SECONDS))
