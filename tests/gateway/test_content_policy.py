"""Content policies through the real stack: a real gateway on loopback, real Redis and a real
worker process; two tenants whose policies differ (alice: the default; bob: a family policy that
also refuses weapons and alcohol), refusals with the concept, a bulk job whose refused variant
ends PROMPT_FILTERED while the others are made, the policy RPC and the audit counter. And the
prompt check on the shipped model's own text encoder (the semantic match)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import generation_pb2_grpc, types_pb2
from clients import Client
from services.gateway import metrics
from services.gateway.server import serve
from tests.gateway.conftest import gateway_settings
from tests.gateway.test_end_to_end import write_toy_model
from tests.services.test_worker_integration import PREFIX, Workers

ROOT = Path(__file__).resolve().parents[2]
FAMILY = {"name": "family", "block": {"weapons": "REFUSE", "alcohol": "REFUSE"}}


@pytest.fixture
def stack(redis_url, keys, tmp_path):
    document = json.loads(keys.path.read_text())
    document["policies"] = {"bob": FAMILY}
    keys.path.write_text(json.dumps(document))
    workers = Workers(redis_url, tmp_path)
    settings = gateway_settings(redis_url, keys, write_toy_model(tmp_path / "repo"), key_prefix=PREFIX,
                                default_model="toy", visibility_timeout=6, task_time_limit=5, task_soft_time_limit=4)
    gateway = serve(settings, health_interval=0.2)
    channel = grpc.insecure_channel(gateway.address)
    try:
        workers.start(concurrency=2, call_seconds=0.01, model_repository=str(tmp_path / "repo"))
        yield generation_pb2_grpc.GenerationStub(channel), keys, gateway.address
    finally:
        channel.close()
        gateway.stop(grace=0)
        workers.stop_all()


def _auth(key: str):
    return (("authorization", f"Bearer {key}"),)


def _refusal(stub, key, **request) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo, list]:
    with pytest.raises(grpc.RpcError) as info:
        stub.Submit(gen.GenerateRequest(**request), metadata=_auth(key))
    status = rpc_status.from_call(info.value)
    details = {}
    for d in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if d.Is(cls.DESCRIPTOR):
                msg = cls()
                d.Unpack(msg)
                details[cls] = msg
    return (info.value.code(), details[error_details_pb2.ErrorInfo],
            [(v.field, v.description) for v in details[error_details_pb2.BadRequest].field_violations])


def _counted(concept: str, tenant: str) -> float:
    return metrics.POLICY_DECISIONS.labels(concept=concept, action="REFUSE", check="PROMPT", tenant=tenant)._value.get()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(120, func_only=True)
def test_a_tenant_policy_refuses_what_another_allows_and_a_bulk_job_filters_only_its_refused_variant(stack):
    stub, keys, _ = stack
    # The default refuses sexual content for everyone, with the concept and never the words.
    before = _counted("sexual_content", "alice")
    code, info, violations = _refusal(stub, keys.alice, prompt="a n4k3d w\u200bоman", seeds=[1])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "CONTENT_POLICY_PROMPT_REFUSED", "atelier.v1", {"concept": "sexual_content", "policy": "default"})
    assert violations == [("prompt", "refused by the content policy: sexual_content")]
    assert "naked" not in str(violations) and _counted("sexual_content", "alice") == before + 1

    # Bob's family policy refuses a beer mug; Alice (the default) gets it drawn.
    code, info, violations = _refusal(stub, keys.bob, prompt="a frothy b e e r mug", seeds=[1])
    assert dict(info.metadata) == {"concept": "alcohol", "policy": "family"}
    events = list(stub.Generate(gen.GenerateRequest(prompt="a frothy beer mug", seeds=[1]), metadata=_auth(keys.alice)))
    assert events[-1].finished.state == types_pb2.JOB_STATE_SUCCEEDED and events[-1].finished.images_filtered == 0

    # Bob's bulk job: the sword variant is filtered per artifact, the other two are made.
    request = gen.GenerateRequest(prompts=[gen.PromptVariant(prompt="a red apple"),
                                           gen.PromptVariant(prompt="an iron sword"),
                                           gen.PromptVariant(prompt="a blue gem")], seeds=[5, 6])
    events = list(stub.Generate(request, metadata=_auth(keys.bob)))
    policy = [e.policy for e in events if e.WhichOneof("event") == "policy"]
    assert [(p.check, p.concept, p.action, p.prompt_index, list(p.indices), p.policy) for p in policy] == [
        (types_pb2.POLICY_CHECK_PROMPT, "weapons", types_pb2.POLICY_ACTION_REFUSE, 1, [2, 3], "family")]
    artifacts = sorted((e.artifact for e in events if e.WhichOneof("event") == "artifact"), key=lambda a: a.index)
    assert [(a.index, a.finish_reason, a.concept, bool(a.data)) for a in artifacts] == [
        (0, types_pb2.FINISH_REASON_COMPLETED, "", True), (1, types_pb2.FINISH_REASON_COMPLETED, "", True),
        (2, types_pb2.FINISH_REASON_PROMPT_FILTERED, "weapons", False),
        (3, types_pb2.FINISH_REASON_PROMPT_FILTERED, "weapons", False),
        (4, types_pb2.FINISH_REASON_COMPLETED, "", True), (5, types_pb2.FINISH_REASON_COMPLETED, "", True)]
    finished = events[-1].finished
    assert (finished.state, finished.images, finished.images_filtered) == (types_pb2.JOB_STATE_SUCCEEDED, 6, 2)

    # A bulk job whose every variant is refused is refused whole, naming the first.
    code, info, violations = _refusal(stub, keys.bob, prompts=[gen.PromptVariant(prompt="a wine glass"),
                                                              gen.PromptVariant(prompt="a dagger")], seeds=[1])
    assert violations == [("prompts[0].prompt", "refused by the content policy: alcohol")]


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(120, func_only=True)
def test_a_client_reads_its_policy_and_an_edited_keys_file_changes_it_at_once(stack):
    stub, keys, address = stack
    default = stub.GetContentPolicy(gen.GetContentPolicyRequest(), metadata=_auth(keys.alice))
    assert default.name == "default" and "weapons" in default.vocabulary
    assert {r.concept for r in default.rules} == {"sexual_content", "hate_symbols", "violence_gore", "self_harm",
                                                   "terrorism", "hard_drug_use"}
    family = stub.GetContentPolicy(gen.GetContentPolicyRequest(), metadata=_auth(keys.bob))
    assert family.name == "family" and {"weapons", "alcohol"} <= {r.concept for r in family.rules}
    with Client(address, keys.bob) as sdk:  # the SDK's call is the RPC
        assert sdk.content_policy() == family
    assert all(r.action == types_pb2.POLICY_ACTION_REFUSE and r.description for r in family.rules)

    document = json.loads(keys.path.read_text())
    document["policies"]["alice"] = {"block": {"gambling": "DROP"}}
    keys.path.write_text(json.dumps(document))
    alice = stub.GetContentPolicy(gen.GetContentPolicyRequest(), metadata=_auth(keys.alice))
    assert alice.name == "alice"
    assert {r.concept: r.action for r in alice.rules}["gambling"] == types_pb2.POLICY_ACTION_DROP
    # DROP lets the prompt through (only the output check drops images showing it).
    handle = stub.Submit(gen.GenerateRequest(prompt="a casino slot machine", seeds=[1]), metadata=_auth(keys.alice))
    assert handle.job_id


def test_the_semantic_match_on_the_shipped_text_encoder_sees_a_paraphrase_that_names_no_term():
    from repository.reader import ModelRepository
    from repository.text_encoder import TextEncoder
    from services.common.policy.check import PromptCheck
    from services.common.policy.policies import default_policy

    if not (ROOT / "models" / "atelier-emoji").is_dir():
        pytest.skip("the shipped model is not in this checkout")
    encoder = TextEncoder(ModelRepository(ROOT / "models").open("atelier-emoji"))
    check = PromptCheck.with_encoder(encoder.pooled, encoder.file_sha256)
    assert check.semantic is not None, "thresholds.json was calibrated for another text encoder"
    verdicts = check.check_many(["a person cutting their own arm with a razor blade", "a cute cat icon",
                                 "an iron sword, pixel art"], default_policy())
    assert [(v.concept, v.by) if v else None for v in verdicts] == [("self_harm", "semantic"), None, None]
