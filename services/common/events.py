"""The events of a job's log, as plain data that maps 1:1 onto `atelier.v1.JobEvent`.

An event is a kind (the name of the JobEvent `oneof` case), a JSON-able dict whose keys
are the proto message's field names, and optionally a blob (preview JPEG or artifact
bytes, the proto's `bytes` field). Durations are seconds in fields ending in
`_seconds` (`eta` -> `eta_seconds`, `queued_for` -> `queued_for_seconds`, `elapsed` ->
`elapsed_seconds`); enums are the strings of :mod:`services.common.jobs`.

Payload shapes (`data`):

- queued:   position, eta_seconds, queue
- started:  worker, execution_provider, queued_for_seconds, attempt
- progress: step, total_steps, eta_seconds, images_done
- preview:  width, height, index, step                      (blob: JPEG)
- artifact: index, mime_type, width, height, seed, finish_reason, provenance (dict of
            `atelier.v1.Provenance` fields, sampler as its name), prompt_index  (blob: data)
- finished: state, error_code, error_message, images, elapsed_seconds
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class EventKind:
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    PREVIEW = "preview"
    ARTIFACT = "artifact"
    FINISHED = "finished"

    ALL = (QUEUED, STARTED, PROGRESS, PREVIEW, ARTIFACT, FINISHED)


@dataclass(frozen=True)
class JobEvent:
    id: str  # stream id, e.g. "1718000000000-0"; WatchRequest.after_event_id resumes after it
    time: float  # Unix seconds
    job_id: str
    kind: str
    data: dict[str, Any]
    blob: bytes | None = None

    @property
    def is_final(self) -> bool:
        return self.kind == EventKind.FINISHED


def queued(position: int, eta_seconds: float, queue: str) -> dict[str, Any]:
    return {"position": int(position), "eta_seconds": float(eta_seconds), "queue": queue}


def started(worker: str, execution_provider: str, queued_for_seconds: float, attempt: int) -> dict[str, Any]:
    return {
        "worker": worker,
        "execution_provider": execution_provider,
        "queued_for_seconds": float(queued_for_seconds),
        "attempt": int(attempt),
    }


def progress(step: int, total_steps: int, eta_seconds: float, images_done: int) -> dict[str, Any]:
    return {
        "step": int(step),
        "total_steps": int(total_steps),
        "eta_seconds": float(eta_seconds),
        "images_done": int(images_done),
    }


def preview(width: int, height: int, index: int, step: int) -> dict[str, Any]:
    return {"width": int(width), "height": int(height), "index": int(index), "step": int(step)}


def artifact(
    index: int,
    mime_type: str,
    width: int,
    height: int,
    seed: int,
    provenance: dict[str, Any],
    prompt_index: int = 0,
    finish_reason: str = "COMPLETED",
) -> dict[str, Any]:
    return {
        "index": int(index),
        "mime_type": mime_type,
        "width": int(width),
        "height": int(height),
        "seed": int(seed),
        "finish_reason": finish_reason,
        "provenance": dict(provenance),
        "prompt_index": int(prompt_index),
    }


# --- stream encoding: one Redis stream entry per event


def to_fields(kind: str, time: float, data: dict[str, Any], blob: bytes | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": kind, "time": repr(float(time)), "data": json.dumps(data, sort_keys=True)}
    if blob is not None:
        fields["blob"] = blob
    return fields


def from_fields(job_id: str, event_id: bytes | str, fields: dict[bytes, bytes]) -> JobEvent:
    return JobEvent(
        id=event_id.decode() if isinstance(event_id, bytes) else event_id,
        time=float(fields[b"time"]),
        job_id=job_id,
        kind=fields[b"kind"].decode(),
        data=json.loads(fields[b"data"]),
        blob=fields.get(b"blob"),
    )
