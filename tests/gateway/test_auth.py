"""API keys: hashed at rest, tenants isolated, UNAUTHENTICATED without a good key."""

import json

import grpc
import pytest

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import models_pb2
from atelier_cli.main import main as atelier
from services.gateway.auth import KeyRing, add_key, bearer_token, hash_key, revoke_key
from tests.gateway.helpers import Stubs, auth, request


def test_keys_file_holds_only_hashes(tmp_path):
    path = tmp_path / "keys.json"
    kid, key = add_key(path, "studio-a")
    text = path.read_text()
    assert key not in text and key.split("_")[-1] not in text
    entry = json.loads(text)["keys"][0]
    assert entry == {"id": kid, "tenant": "studio-a", "sha256": hash_key(key), "created": entry["created"]}
    assert (path.stat().st_mode & 0o777) == 0o600
    ring = KeyRing(path)
    assert ring.tenant(key) == "studio-a"
    assert ring.tenant(key + "x") is None
    assert ring.tenant(f"atk_{kid}_wrong") is None
    assert ring.tenant("garbage") is None


def test_keyring_sees_added_and_revoked_keys(tmp_path):
    path = tmp_path / "keys.json"
    ring = KeyRing(path)
    assert ring.tenant("atk_x_y") is None  # no file yet: no keys
    kid, key = add_key(path, "t1")
    assert ring.tenant(key) == "t1"
    assert revoke_key(path, kid)
    assert ring.tenant(key) is None
    assert not revoke_key(path, kid)


def test_bearer_token_parsing():
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("Authorization", "bearer  abc ")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) is None
    assert bearer_token([]) is None


def test_add_key_command_prints_the_key_once(tmp_path, capsys):
    path = tmp_path / "k.json"
    assert atelier(["gateway", "add-key", "--tenant", "studio-b", "--keys-file", str(path)]) == 0
    key = capsys.readouterr().out.strip()
    assert KeyRing(path).tenant(key) == "studio-b"


@pytest.mark.redis
@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer atk_nope_nope"),),
                                      (("authorization", "Basic dXNlcjpwYXNz"),)])
def test_every_rpc_needs_a_good_key(stack, metadata):
    stubs = Stubs(stack.address)
    calls = [
        lambda: stubs.gen.Submit(request(), metadata=metadata),
        lambda: list(stubs.gen.Generate(request(), metadata=metadata)),
        lambda: list(stubs.gen.Watch(gen.WatchRequest(job_id="x"), metadata=metadata)),
        lambda: stubs.gen.GetJob(gen.GetJobRequest(job_id="x"), metadata=metadata),
        lambda: stubs.gen.CancelJob(gen.CancelJobRequest(job_id="x"), metadata=metadata),
        lambda: stubs.models.ListModels(models_pb2.ListModelsRequest(), metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stack.queue.sent == []
    stubs.close()


@pytest.mark.redis
def test_another_tenants_job_is_not_found_like_an_unknown_one(stack):
    stubs = Stubs(stack.address)
    job_id = stubs.gen.Submit(request(), metadata=auth(stack.keys.alice)).job_id
    answers = {}
    for name, jid in (("foreign", job_id), ("unknown", "0" * 32)):
        for rpc, call in (
            ("get", lambda j: stubs.gen.GetJob(gen.GetJobRequest(job_id=j), metadata=auth(stack.keys.bob))),
            ("cancel", lambda j: stubs.gen.CancelJob(gen.CancelJobRequest(job_id=j), metadata=auth(stack.keys.bob))),
            # A leak would stream the queued job's events and wait for more: the deadline ends it.
            ("watch", lambda j: list(stubs.gen.Watch(gen.WatchRequest(job_id=j), metadata=auth(stack.keys.bob),
                                                     timeout=10))),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call(jid)
            answers[name, rpc] = (err.value.code(), err.value.details())
    for rpc in ("get", "cancel", "watch"):
        assert answers["foreign", rpc] == answers["unknown", rpc] == (grpc.StatusCode.NOT_FOUND, "no such job")
    # ...and the owner still sees it, uncancelled.
    job = stubs.gen.GetJob(gen.GetJobRequest(job_id=job_id), metadata=auth(stack.keys.alice))
    assert job.state == 1  # QUEUED
    stubs.close()
