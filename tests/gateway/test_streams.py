"""Generate and Watch streams: order, resume from any event id, cancel, disconnects, shutdown."""

import threading
import time

import grpc
import pytest
from PIL import Image

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import models_pb2, types_pb2
from tests.gateway.conftest import SCRIPTED_IMAGE_SIDE
from tests.gateway.helpers import Stubs, auth, kind, request

pytestmark = pytest.mark.redis


def _watch(stubs, key, job_id, after=""):
    return stubs.gen.Watch(gen.WatchRequest(job_id=job_id, after_event_id=after), metadata=auth(key))


def test_generate_streams_the_whole_job(make_stack, tmp_path):
    stack = make_stack(start_worker=True)
    stubs = Stubs(stack.address)
    events = list(stubs.gen.Generate(request(seeds=[11, 12], preview_every_steps=1), metadata=auth(stack.keys.alice)))
    kinds = [kind(e) for e in events]
    assert kinds[:2] == ["queued", "started"] and kinds[-1] == "finished"
    assert kinds.count("artifact") == 2 and "progress" in kinds and "preview" in kinds
    assert len({e.job_id for e in events}) == 1
    artifacts = [e.artifact for e in events if kind(e) == "artifact"]
    assert [a.seed for a in artifacts] == [11, 12]
    assert artifacts[0].provenance.sampler == types_pb2.SAMPLER_DPMPP_2M
    assert artifacts[0].finish_reason == types_pb2.FINISH_REASON_COMPLETED
    (tmp_path / "a.png").write_bytes(artifacts[0].data)
    assert Image.open(tmp_path / "a.png").size == (SCRIPTED_IMAGE_SIDE, SCRIPTED_IMAGE_SIDE)  # the stand-in's PNG
    finished = events[-1].finished
    assert finished.state == types_pb2.JOB_STATE_SUCCEEDED and finished.images == 2
    progress = [e.progress for e in events if kind(e) == "progress"]
    assert progress[-1].step == progress[-1].total_steps == 6
    ids = [e.id for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    job = stubs.gen.GetJob(gen.GetJobRequest(job_id=events[0].job_id), metadata=auth(stack.keys.alice))
    assert job.state == types_pb2.JOB_STATE_SUCCEEDED and job.images_done == job.images_total == 2
    assert list(job.seeds) == [11, 12] and job.model == "test-model" and job.model_version == "1"
    assert job.last_event_id == events[-1].id and job.started_at.seconds and job.finished_at.seconds
    stubs.close()


def test_watch_resumes_after_any_event_with_nothing_missed_or_repeated(stack):
    stubs = Stubs(stack.address)
    stack.worker.step_delay = 0.02
    job_id = stubs.gen.Submit(request(seeds=[1, 2], preview_every_steps=1), metadata=auth(stack.keys.alice)).job_id
    runner = threading.Thread(target=stack.worker.run_one)
    runner.start()
    seen, after = [], ""
    # Drop the connection after every 3 events, resuming each time from the last id received.
    while not seen or kind(seen[-1]) != "finished":
        call = _watch(stubs, stack.keys.alice, job_id, after)
        for i, event in enumerate(call):
            seen.append(event)
            if i == 2 or kind(event) == "finished":
                break
        call.cancel()
        after = seen[-1].id
    runner.join(timeout=20)
    assert not runner.is_alive()
    full = list(_watch(stubs, stack.keys.alice, job_id))
    assert [e.id for e in seen] == [e.id for e in full]
    assert seen == full
    for k in range(len(full)):  # and from every position of a finished job's log
        assert list(_watch(stubs, stack.keys.alice, job_id, full[k].id)) == full[k + 1:]
    stubs.close()


def test_watch_rejects_a_malformed_event_id(stack):
    stubs = Stubs(stack.address)
    job_id = stubs.gen.Submit(request(), metadata=auth(stack.keys.alice)).job_id
    with pytest.raises(grpc.RpcError) as err:
        list(_watch(stubs, stack.keys.alice, job_id, "yesterday"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stubs.close()


def test_cancel_a_running_job(stack):
    stubs = Stubs(stack.address)
    stack.worker.step_delay = 0.05
    stack.worker.steps = 100
    job_id = stubs.gen.Submit(request(), metadata=auth(stack.keys.alice)).job_id
    runner = threading.Thread(target=stack.worker.run_one)
    runner.start()
    events = _watch(stubs, stack.keys.alice, job_id)
    for event in events:
        if kind(event) == "progress":
            break
    reply = stubs.gen.CancelJob(gen.CancelJobRequest(job_id=job_id), metadata=auth(stack.keys.alice))
    assert reply.cancelled and reply.state == types_pb2.JOB_STATE_CANCELLED
    rest = list(events)
    assert kind(rest[-1]) == "finished" and rest[-1].finished.state == types_pb2.JOB_STATE_CANCELLED
    runner.join(timeout=5)
    again = stubs.gen.CancelJob(gen.CancelJobRequest(job_id=job_id), metadata=auth(stack.keys.alice))
    assert not again.cancelled and again.state == types_pb2.JOB_STATE_CANCELLED
    stubs.close()


@pytest.mark.parametrize("cancel_on_disconnect", [False, True])
def test_leaving_a_generate_stream_cancels_only_when_asked(stack, cancel_on_disconnect):
    stubs = Stubs(stack.address)
    stack.worker.step_delay = 0.02
    stack.worker.steps = 20
    call = stubs.gen.Generate(request(cancel_on_disconnect=cancel_on_disconnect), metadata=auth(stack.keys.alice))
    first = next(call)
    runner = threading.Thread(target=stack.worker.run_one)
    runner.start()
    for event in call:
        if kind(event) == "progress":
            break
    call.cancel()  # the client goes away
    runner.join(timeout=10)
    state = stack.store.get(first.job_id).state
    assert state == ("CANCELLED" if cancel_on_disconnect else "SUCCEEDED")
    stubs.close()


def test_list_models(stack):
    stubs = Stubs(stack.address)
    reply = stubs.models.ListModels(models_pb2.ListModelsRequest(), metadata=auth(stack.keys.alice))
    (m,) = reply.models
    assert (m.name, m.version, m.ready, m.latent_factor, list(m.styles)) == ("test-model", "1", True, 4,
                                                                              ["google", "twitter"])
    assert m.supports_init_image and not m.supports_tiling and len(m.sha256) == 64
    assert m.size_step == 4  # the UNet of the test model halves nothing
    # The test model's manifest states no defaults: the library's (diffusion/defaults.py) apply.
    assert m.default_sampler == types_pb2.SAMPLER_UNIPC and types_pb2.SAMPLER_DPMPP_2M in m.samplers
    assert (m.default_steps, m.default_guidance_scale) == (20, 5.0)
    stubs.close()


def test_graceful_shutdown_lets_open_streams_finish(stack):
    stubs = Stubs(stack.address)
    stack.worker.step_delay = 0.05
    stack.worker.steps = 10
    job_id = stubs.gen.Submit(request(), metadata=auth(stack.keys.alice)).job_id
    stream = _watch(stubs, stack.keys.alice, job_id)
    assert kind(next(stream)) == "queued"
    runner = threading.Thread(target=stack.worker.run_one)
    runner.start()
    stopper = threading.Thread(target=stack.gateway.stop, kwargs={"grace": 5.0})
    time.sleep(0.1)
    stopper.start()
    time.sleep(0.1)
    with pytest.raises(grpc.RpcError):  # no new calls while draining
        Stubs(stack.address).gen.GetJob(gen.GetJobRequest(job_id=job_id), metadata=auth(stack.keys.alice),
                                        timeout=2)
    rest = list(stream)  # ...but the open stream runs to the job's end
    assert kind(rest[-1]) == "finished"
    stopper.join(timeout=20)
    runner.join(timeout=20)
    assert not stopper.is_alive() and not runner.is_alive()
    stubs.close()
