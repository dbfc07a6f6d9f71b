"""The event contract (services/common/events.py): every kind, with every field set, goes
dataclass -> Redis stream entry -> dataclass -> `atelier.v1` message and arrives whole. A field
added to a payload or to its proto message and not mapped fails here."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from google.protobuf.descriptor import FieldDescriptor

from atelier.v1 import generation_pb2 as gen
from services.common import events as ev
from services.gateway import convert

pytestmark = pytest.mark.redis

PROVENANCE = ev.Provenance(
    model_name="atelier-emoji", model_version="3", model_sha256="ab" * 32, sampler="euler_ancestral",
    steps=30, steps_run=12, guidance_scale=4.5, seed=2**63 + 5, prompt="a fox", negative_prompt="blurry",
    style="flat", width=64, height=48, strength=0.4, tiling=True, init_image_sha256="cd" * 32,
    mask_sha256="ef" * 32, software_version="1.2.3", guidance_rescale=0.7, eta=1.0, upscale=4,
    upscaler_name="atelier-upscale", upscaler_version="1", upscaler_sha256="12" * 32, upscale_steps=4,
    upscale_fast=True, upscale_image_sha256="34" * 32,
)
# One payload of each kind, every field away from its default.
EVERY_FIELD_SET = {
    ev.EventKind.QUEUED: ev.Queued(position=3, eta_seconds=2.5, queue="batch"),
    ev.EventKind.STARTED: ev.Started(worker="w@host", execution_provider="CPUExecutionProvider",
                                     queued_for_seconds=0.25, attempt=2),
    ev.EventKind.PROGRESS: ev.Progress(step=7, total_steps=20, eta_seconds=1.5, images_done=1, shards_done=2,
                                       shards_total=5),
    ev.EventKind.PREVIEW: ev.Preview(width=16, height=12, index=1, step=5),
    ev.EventKind.ARTIFACT: ev.Artifact(index=2, mime_type="image/webp", width=64, height=48, seed=2**63 + 5,
                                       finish_reason="FILTERED", provenance=PROVENANCE, prompt_index=1,
                                       concept="weapons", content_credentials="YzJwYQ=="),
    ev.EventKind.FINISHED: ev.Finished(state="FAILED", error_code="INTERNAL", error_message="boom", images=3,
                                       elapsed_seconds=9.75, images_filtered=2),
    ev.EventKind.POLICY: ev.Policy(check="PROMPT", concept="alcohol", action="REFUSE", prompt_index=2,
                                   indices=(4, 5), policy="kids"),
}
BLOBS = {ev.EventKind.PREVIEW: b"\xff\xd8jpeg", ev.EventKind.ARTIFACT: b"\x89PNG image"}
ENUMS = {"state", "error_code", "finish_reason", "sampler", "check", "action"}


def _not_default(payload) -> list[str]:
    return [f.name for f in dataclasses.fields(payload) if getattr(payload, f.name) == f.default]


def _assert_carried(payload, message) -> None:
    """Every dataclass field is in the message with its value, and every message field is set."""
    for f in dataclasses.fields(payload):
        value = getattr(payload, f.name)
        if dataclasses.is_dataclass(value):
            _assert_carried(value, getattr(message, f.name))
        elif f.name.endswith("_seconds"):
            assert getattr(message, f.name.removesuffix("_seconds")).ToNanoseconds() == round(value * 1e9), f.name
        elif f.name in ENUMS:
            enum = message.DESCRIPTOR.fields_by_name[f.name].enum_type
            assert enum.values_by_number[getattr(message, f.name)].name.endswith("_" + value.upper()), f.name
        elif message.DESCRIPTOR.fields_by_name[f.name].type == FieldDescriptor.TYPE_BYTES:  # base64 in the JSON
            assert getattr(message, f.name) == base64.b64decode(value), f.name
        elif isinstance(value, float):
            assert getattr(message, f.name) == pytest.approx(value, rel=1e-6), f.name
        elif isinstance(value, tuple):
            assert tuple(getattr(message, f.name)) == value, f.name
        else:
            assert getattr(message, f.name) == value, f.name
    assert {d.name for d, _ in message.ListFields()} == set(message.DESCRIPTOR.fields_by_name), type(message)


def test_every_kind_has_one_payload_with_every_field_set_here():
    assert set(EVERY_FIELD_SET) == set(ev.EventKind.ALL) == set(ev.PAYLOADS)
    assert set(gen.JobEvent.DESCRIPTOR.oneofs_by_name["event"].fields) == {
        gen.JobEvent.DESCRIPTOR.fields_by_name[k] for k in ev.EventKind.ALL
    }
    for payload in (*EVERY_FIELD_SET.values(), PROVENANCE):
        assert _not_default(payload) == [], type(payload).__name__


@pytest.mark.parametrize("kind", ev.EventKind.ALL)
def test_every_kind_round_trips_through_the_stream_to_protobuf(redis_client, kind):
    payload = EVERY_FIELD_SET[kind]
    key = "atelier-test:events-contract"
    redis_client.delete(key)
    event_id = redis_client.xadd(key, ev.to_fields(payload, 1_718_000_000.5, BLOBS.get(kind)))
    (stored_id, stored), = redis_client.xrange(key)
    redis_client.delete(key)

    event = ev.from_fields("job1", stored_id, stored)
    assert event.decoded() == ev.Decoded(payload, ())
    message = convert.event_to_pb(event)
    assert message.id == event_id.decode() and message.job_id == "job1" and message.WhichOneof("event") == kind
    body = getattr(message, kind)
    _assert_carried(payload, body)
    blob_field = {ev.EventKind.PREVIEW: "jpeg", ev.EventKind.ARTIFACT: "data"}.get(kind)
    if blob_field:
        assert getattr(body, blob_field) == BLOBS[kind]


def test_a_newer_writers_fields_and_kinds_are_named_not_dropped():
    data = {**dataclasses.asdict(EVERY_FIELD_SET[ev.EventKind.ARTIFACT]), "watermark": "v2"}
    data["provenance"] = {**data["provenance"], "lora": "x"}
    decoded = ev.decode(ev.EventKind.ARTIFACT, data)
    assert decoded.payload == EVERY_FIELD_SET[ev.EventKind.ARTIFACT]
    assert sorted(decoded.unknown) == ["provenance.lora", "watermark"]
    assert ev.decode("safety_check", {"passed": True}) == ev.Decoded(None, ())
    assert ev.decode(ev.EventKind.PROGRESS, {"step": 4}).payload == ev.Progress(step=4)  # an older writer's event
