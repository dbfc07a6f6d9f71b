"""Reading a job: its record, its event log (from any position, or followed live) and its images."""

from __future__ import annotations

import time
from collections.abc import Iterator

from services.common import events as ev
from services.common.events import EventKind, JobEvent
from services.common.jobs import JobRecord, JobSpec


class JobNotFound(LookupError):
    """No such job (or it belongs to another tenant, or it expired)."""


class Reading:
    """A mixin of JobStore."""

    def get(self, job_id: str, tenant: str | None = None) -> JobRecord:
        """The job, or JobNotFound (also when `tenant` is given and owns no such job)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.job_key(job_id))
        pipe.xrevrange(self.events_key(job_id), count=1)
        fields, last = pipe.execute()
        return record_of(job_id, fields, last[0][0].decode() if last else "", tenant)

    def artifact_bytes(self, job_id: str, index: int) -> bytes | None:
        return self.client.hget(self.artifacts_key(job_id), str(index))

    def artifact_indices(self, job_id: str) -> set[int]:
        return {int(k) for k in self.client.hkeys(self.artifacts_key(job_id))}

    def read_events(self, job_id: str, after: str = "", count: int | None = None) -> list[JobEvent]:
        """Events after id `after` ("" or "0": from the first), oldest first."""
        start = f"({after}" if after and after != "0" else "-"
        entries = self.client.xrange(self.events_key(job_id), min=start, max="+", count=count)
        return [self._decode(job_id, eid, fields) for eid, fields in entries]

    def follow_events(
        self, job_id: str, after: str = "", block_ms: int = 1000, timeout: float | None = None
    ) -> Iterator[JobEvent]:
        """Yield events after `after` as they come; ends after `finished` (or on `timeout` seconds of quiet).

        Raises JobNotFound when the job does not exist (or expired).
        """
        last = after if after and after != "0" else "0-0"
        key = self.events_key(job_id)
        quiet_since = time.monotonic()
        while True:
            reply = self.client.xread({key: last}, block=block_ms, count=64)
            if not reply:
                if not self.client.exists(self.job_key(job_id)):
                    raise JobNotFound(job_id)
                if timeout is not None and time.monotonic() - quiet_since > timeout:
                    return
                continue
            quiet_since = time.monotonic()
            for eid, fields in reply[0][1]:
                event = self._decode(job_id, eid, fields)
                last = event.id
                yield event
                if event.is_final:
                    return

    def _decode(self, job_id: str, eid: bytes, fields: dict[bytes, bytes]) -> JobEvent:
        event = ev.from_fields(job_id, eid, fields)
        if event.kind == EventKind.ARTIFACT and event.blob is None:
            # Image bytes live in the artifacts hash, once, not in every reader's stream copy.
            blob = self.artifact_bytes(job_id, event.data["index"])
            event = JobEvent(event.id, event.time, event.job_id, event.kind, event.data, blob)
        return event


def record_of(job_id: str, fields: dict[bytes, bytes], last_event_id: str, tenant: str | None = None) -> JobRecord:
    """The record read as `fields`, or JobNotFound when there is none (it expired) or, with
    `tenant`, when another tenant owns it."""
    if not fields or (tenant is not None and fields[b"tenant"].decode() != tenant):
        raise JobNotFound(job_id)
    return _record(job_id, fields, last_event_id)


def _record(job_id: str, f: dict[bytes, bytes], last_event_id: str) -> JobRecord:
    def text(name: str) -> str:
        return f.get(name.encode(), b"").decode()

    def number(name: str) -> float | None:
        raw = text(name)
        return float(raw) if raw else None

    spec = JobSpec.from_json(f[b"spec"], f.get(b"init_image"), f.get(b"mask"), f.get(b"upscale_image"))
    return JobRecord(
        job_id=job_id,
        tenant=text("tenant"),
        spec=spec,
        state=text("state"),
        # Stored since job history; a record from before takes its plan's (a plan-less one: unknown).
        kind=text("kind") or (spec.plan.kind if spec.plan else ""),
        created_at=number("created_at") or 0.0,
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        attempt=int(text("attempt") or 0),
        worker=text("worker"),
        steps_done=int(text("steps_done") or 0),
        steps_total=int(text("steps_total") or 0),
        images_done=int(text("images_done") or 0),
        shards_done=int(text("shards_done") or 0),
        error_code=text("error_code"),
        error_message=text("error_message"),
        last_event_id=last_event_id,
    )
