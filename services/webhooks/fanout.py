"""From job events to deliveries: read the new events of every followed job, choose each
endpoint's (its event filter, progress at most every N seconds), and schedule them with the
job's new cursor in one step (services/common/webhooks/deliveries.py)."""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import UTC, datetime

from services.common.events import EventKind, JobEvent, from_fields
from services.common.store import JobStore
from services.common.webhooks.config import Endpoint, Webhooks
from services.common.webhooks.deliveries import Delivery, WebhookStore, job_endpoint, msg_id
from services.webhooks import metrics

log = logging.getLogger(__name__)

FOLLOW_AT_ONCE = 1000  # followed jobs read per round (a page); pages go round the followed set
EVENTS_AT_ONCE = 100  # events read per job per round


def body(job_id: str, labels: dict, event: JobEvent, image: bytes | None) -> str:
    """The JSON a webhook carries (docs/API.md, "Webhooks"): the event as the job's log holds it."""
    data = {"job_id": job_id, "event_id": event.id, "labels": labels, **event.data}
    if image is not None:
        data["data_base64"] = base64.b64encode(image).decode()
    stamp = datetime.fromtimestamp(event.time, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"type": f"job.{event.kind}", "timestamp": stamp, "data": data}, sort_keys=True)


class FanOut:
    def __init__(self, deliveries: WebhookStore, jobs: JobStore, webhooks: Webhooks, *,
                 max_inline_image_bytes: int, state_ttl_seconds: int):
        self.deliveries, self.jobs, self.webhooks = deliveries, jobs, webhooks
        self.max_inline_image_bytes = max_inline_image_bytes
        self.state_ttl_seconds = state_ttl_seconds
        self.page_size = FOLLOW_AT_ONCE
        self._offset = 0  # where the next page of the followed jobs starts
        self._pass_events = 0

    def step(self, block_ms: int) -> int:
        """One round over a page of the followed jobs: read their new events and schedule their
        deliveries; returns the events read, or -1 when a whole pass over the followed jobs found
        none (the caller then waits). With one page it waits up to `block_ms` for events itself.

        Pages go round the followed set (oldest first), so a thousand long queued jobs never keep
        a newer job's events waiting for more than a pass."""
        total = self.deliveries.following_count()
        metrics.FOLLOWED.set(total)
        following = self.deliveries.following(self.page_size, offset=self._offset)
        single = self._offset == 0 and total <= self.page_size
        self._offset = 0 if self._offset + self.page_size >= total else self._offset + self.page_size
        read = []
        if following:
            states = self.deliveries.states(following)
            streams = {self.jobs.events_key(j): s.get("cursor") or "0" for j, s in zip(following, states, strict=True)}
            read = self.jobs.client.xread(streams, count=EVENTS_AT_ONCE, block=block_ms if single else None) or []
            by_key = {key.decode(): entries for key, entries in read}
            for job_id, state in zip(following, states, strict=True):
                entries = by_key.get(self.jobs.events_key(job_id))
                if entries:
                    self._fan_out(job_id, state, entries)
        events = sum(len(entries) for _, entries in read)
        self._pass_events += events
        if self._offset == 0:  # a pass ended
            passed, self._pass_events = self._pass_events, 0
            return passed if passed or (single and following) else -1
        return events

    def prune(self) -> int:
        """Stop following jobs whose record expired before their `finished` event was read (a
        dispatcher down for longer than ATELIER_RESULT_TTL_SECONDS); returns how many."""
        following = self.deliveries.following(self.deliveries.following_count())
        pipe = self.jobs.client.pipeline(transaction=False)
        for job_id in following:
            pipe.exists(self.jobs.job_key(job_id))
        gone = [j for j, there in zip(following, pipe.execute(), strict=True) if not there]
        for job_id in gone:
            log.warning("job %s expired before its webhooks were sent; its remaining events are lost", job_id)
            self.deliveries.unfollow(job_id)
        return len(gone)

    def _fan_out(self, job_id: str, state: dict[str, str], entries) -> int:
        tenant, hooks, spec = self.jobs.client.hmget(self.jobs.job_key(job_id), "tenant", "webhooks", "spec")
        if tenant is None:
            return 0  # expired: prune() lets it go
        tenant = tenant.decode()
        own = job_endpoint(hooks)
        endpoints = list(self.webhooks.tenant(tenant).endpoints) + ([own] if own else [])
        labels = json.loads(spec).get("labels", {}) if spec else {}
        updates: dict[str, str] = {}
        deliveries: list[Delivery] = []
        ends = False
        for eid, fields in entries:
            event = from_fields(job_id, eid, fields)
            ends = ends or event.kind == EventKind.FINISHED
            wanted = [e for e in endpoints if e.wants(event.kind) and self._due(e, event, state, updates)]
            if not wanted:
                continue
            text = body(job_id, labels, event, self._image(job_id, event))
            mid = msg_id(job_id, event.id)
            for endpoint in wanted:
                deliveries.append(Delivery(f"{endpoint.id}:{mid}", mid, tenant, endpoint.id, endpoint.url, job_id,
                                           event.kind, text, 0, event.time))
        last = entries[-1][0].decode()
        if not self.deliveries.commit(job_id, state.get("cursor", ""), last, ends, self.state_ttl_seconds,
                                      time.time(), updates, deliveries):
            return 0  # another dispatcher moved this job on first; it scheduled these
        for d in deliveries:
            metrics.SCHEDULED.labels(event=d.kind).inc()
        return len(deliveries)

    @staticmethod
    def _due(endpoint: Endpoint, event: JobEvent, state: dict[str, str], updates: dict[str, str]) -> bool:
        """Whether `endpoint` gets `event`: progress at most every progress_interval_seconds."""
        if event.kind != EventKind.PROGRESS:
            return True
        field = f"p:{endpoint.id}"
        last = float(updates.get(field) or state.get(field) or "-inf")
        if event.time - last < endpoint.progress_interval_seconds:
            return False
        updates[field] = repr(event.time)
        return True

    def _image(self, job_id: str, event: JobEvent) -> bytes | None:
        if event.kind != EventKind.ARTIFACT:
            return None
        image = self.jobs.artifact_bytes(job_id, int(event.data.get("index", 0)))
        return image if image is not None and len(image) <= self.max_inline_image_bytes else None
