"""A newer worker's event meets this gateway (docs/ARCHITECTURE.md, "Event contract"): a field
the gateway does not know, and a kind it does not know, reach the Watch stream without
breaking it; each is counted every time and logged once."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from atelier.v1 import generation_pb2 as gen
from services.common import events as ev
from services.common.embedded_redis import free_port
from tests.gateway.helpers import Stubs, auth, kind, request
from tests.gateway.test_metrics_contract import scraped

pytestmark = pytest.mark.redis


def unknown_count(port: int, kind_: str, field: str) -> float:
    return scraped(port, f'atelier_gateway_unknown_event_fields_total{{field="{field}",kind="{kind_}"}}')


def test_unknown_fields_and_kinds_reach_watch_and_are_counted_and_logged_once(make_stack, caplog):
    port = free_port()
    stack = make_stack(gateway_metrics_port=port)
    stubs = Stubs(stack.address)
    alice = auth(stack.keys.alice)
    field, new_kind = f"sparkle_{uuid.uuid4().hex[:8]}", f"kind_{uuid.uuid4().hex[:8]}"
    job_id = stubs.gen.Submit(request(), metadata=alice).job_id
    events_key = stack.store.events_key(job_id)
    # What a newer worker writes: a progress payload with one more field, and a kind of event
    # this gateway has never heard of, each twice.
    newer_progress = json.dumps({**json.loads(ev.to_json(ev.Progress(3, 6, 1.5, 0))), field: 42})
    for _ in range(2):
        stack.redis.xadd(events_key, {"kind": "progress", "time": repr(time.time()), "data": newer_progress})
        stack.redis.xadd(events_key, {"kind": new_kind, "time": repr(time.time()), "data": json.dumps({"ok": True})})
    stack.store.cancel(job_id)

    with caplog.at_level(logging.WARNING, logger="services.gateway.convert"):
        events = list(stubs.gen.Watch(gen.WatchRequest(job_id=job_id), metadata=alice, timeout=20))

    assert [kind(e) for e in events] == ["queued", "progress", None, "progress", None, "finished"]
    progress = events[1].progress
    assert (progress.step, progress.total_steps, progress.eta.ToNanoseconds()) == (3, 6, 1_500_000_000)
    assert events[2].id and events[2].job_id == job_id  # resumable past the event it cannot show
    assert unknown_count(port, "progress", field) == 2
    assert unknown_count(port, new_kind, "") == 2
    said = [r.getMessage() for r in caplog.records]
    assert sum(field in line for line in said) == 1, said
    assert sum(new_kind in line for line in said) == 1, said
    stubs.close()
