import grpc
import pytest

from atelier.v1 import generation_pb2 as gen
from tests.gateway.helpers import Stubs, auth, kind, request

pytestmark = pytest.mark.redis


def test_submit_and_generate(stack):
    stubs = Stubs(stack.address)
    handle = stubs.gen.Submit(request(seeds=[1, 2]), metadata=auth(stack.keys.alice))
    assert handle.job_id and list(handle.seeds) == [1, 2]
    stack.worker.run_one()
    events = list(stubs.gen.Watch(gen.WatchRequest(job_id=handle.job_id), metadata=auth(stack.keys.alice)))
    assert [kind(e) for e in events][0] == "queued"
    assert kind(events[-1]) == "finished"
    with pytest.raises(grpc.RpcError) as err:
        stubs.gen.GetJob(gen.GetJobRequest(job_id=handle.job_id), metadata=auth(stack.keys.bob))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stubs.close()
