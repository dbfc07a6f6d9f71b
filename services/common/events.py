"""The events of a job's log: one typed payload per kind, the one place payloads are built.

An event is a kind (the name of the `atelier.v1.JobEvent` `oneof` case), a payload (one of
the frozen dataclasses below, whose fields are the proto message's field names) and
optionally a blob (preview JPEG or artifact bytes, the proto's `bytes` field). Durations
are seconds in fields ending in `_seconds` (`eta` -> `eta_seconds`, `queued_for` ->
`queued_for_seconds`, `elapsed` -> `elapsed_seconds`); enums are the strings of
:mod:`services.common.jobs`.

A payload travels as JSON in the Redis stream (:func:`to_fields`). The store's Lua scripts
write the JSON they are given; a value only the script can know (the attempt number, the
queue position) it puts under the field name the payload class hands it
(:func:`store_filled`), so the scripts name no payload field themselves. The gateway maps
each kind to protobuf field by field (services/gateway/convert.py); a field or kind this
code does not know is kept in :attr:`Decoded.unknown` for it to report, never dropped
silently (docs/ARCHITECTURE.md, "Event contract").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar


class EventKind:
    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    PREVIEW = "preview"
    ARTIFACT = "artifact"
    FINISHED = "finished"
    POLICY = "policy"

    ALL = (QUEUED, STARTED, PROGRESS, PREVIEW, ARTIFACT, FINISHED, POLICY)


@dataclass(frozen=True)
class Queued:
    KIND: ClassVar[str] = EventKind.QUEUED
    # Under a quota the store counts the jobs ahead and the ETA in the step that admits the job.
    STORE_FILLED: ClassVar[tuple[str, ...]] = ("position", "eta_seconds")

    position: int = 0
    eta_seconds: float = 0.0
    queue: str = ""


@dataclass(frozen=True)
class Started:
    KIND: ClassVar[str] = EventKind.STARTED
    # The attempt number and the time in queue come from the record in the step that begins it.
    STORE_FILLED: ClassVar[tuple[str, ...]] = ("attempt", "queued_for_seconds")

    worker: str = ""
    execution_provider: str = ""
    queued_for_seconds: float = 0.0
    attempt: int = 0


@dataclass(frozen=True)
class Progress:
    KIND: ClassVar[str] = EventKind.PROGRESS
    STORE_FILLED: ClassVar[tuple[str, ...]] = ()

    step: int = 0
    total_steps: int = 0
    eta_seconds: float = 0.0
    images_done: int = 0
    shards_done: int = 0  # a dataset job's shards written, by every attempt
    shards_total: int = 0


@dataclass(frozen=True)
class Preview:
    KIND: ClassVar[str] = EventKind.PREVIEW
    STORE_FILLED: ClassVar[tuple[str, ...]] = ()

    width: int = 0
    height: int = 0
    index: int = 0
    step: int = 0


@dataclass(frozen=True)
class Provenance:
    """`atelier.v1.Provenance`: how to make an artifact again (sampler as its name)."""

    model_name: str = ""
    model_version: str = ""
    model_sha256: str = ""
    sampler: str = ""
    steps: int = 0
    steps_run: int = 0
    guidance_scale: float = 0.0
    seed: int = 0
    prompt: str = ""
    negative_prompt: str = ""
    style: str = ""
    width: int = 0
    height: int = 0
    strength: float = 0.0
    tiling: bool = False
    init_image_sha256: str = ""
    mask_sha256: str = ""
    software_version: str = ""
    guidance_rescale: float = 0.0
    eta: float = 0.0
    upscale: int = 0
    upscaler_name: str = ""
    upscaler_version: str = ""
    upscaler_sha256: str = ""
    upscale_steps: int = 0
    upscale_fast: bool = False
    upscale_image_sha256: str = ""


@dataclass(frozen=True)
class Artifact:
    KIND: ClassVar[str] = EventKind.ARTIFACT
    STORE_FILLED: ClassVar[tuple[str, ...]] = ()

    index: int = 0
    mime_type: str = ""
    width: int = 0
    height: int = 0
    seed: int = 0
    finish_reason: str = "COMPLETED"
    provenance: Provenance = Provenance()
    prompt_index: int = 0
    concept: str = ""  # the content policy's concept when finish_reason is a filtered one
    # Raw RGBA8 rows' detached C2PA manifest store, base64 (services/common/credentials.py); files embed theirs.
    content_credentials: str = ""


@dataclass(frozen=True)
class Finished:
    KIND: ClassVar[str] = EventKind.FINISHED
    # The artifacts reported, the time since submission and the artifacts filtered are read off
    # the record as the job ends.
    STORE_FILLED: ClassVar[tuple[str, ...]] = ("images", "elapsed_seconds", "images_filtered")

    state: str = ""
    error_code: str = ""
    error_message: str = ""
    images: int = 0
    elapsed_seconds: float = 0.0
    images_filtered: int = 0


@dataclass(frozen=True)
class Policy:
    """`atelier.v1.PolicyDecision`: the tenant's content policy filtered a prompt or an image
    (check and action as the strings of services.common.policy.concepts)."""

    KIND: ClassVar[str] = EventKind.POLICY
    STORE_FILLED: ClassVar[tuple[str, ...]] = ()

    check: str = ""
    concept: str = ""
    action: str = ""
    prompt_index: int = 0
    indices: tuple[int, ...] = ()
    policy: str = ""


Payload = Queued | Started | Progress | Preview | Artifact | Finished | Policy
PAYLOADS: dict[str, type] = {cls.KIND: cls for cls in (Queued, Started, Progress, Preview, Artifact, Finished,
                                                       Policy)}


def to_json(payload: Payload) -> str:
    return json.dumps(asdict(payload), sort_keys=True)


def store_filled(payload: Payload) -> str:
    """The JSON list of field names a store script fills, in the order the script computes them."""
    return json.dumps(list(type(payload).STORE_FILLED))


@dataclass(frozen=True)
class Decoded:
    payload: Payload | None  # None: a kind this code does not know
    unknown: tuple[str, ...]  # fields this code does not know ("provenance.x" when nested)


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def _build(cls: type, data: dict[str, Any], prefix: str, unknown: list[str]) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for name, value in data.items():
        f = known.get(name)
        if f is None:
            unknown.append(prefix + name)
        elif f.type in _SCALARS:
            values[name] = _SCALARS[f.type](value)
        elif f.type == "tuple[int, ...]":
            values[name] = tuple(int(v) for v in value)
        else:
            values[name] = _build(globals()[f.type], value, f"{prefix}{name}.", unknown)
    return cls(**values)  # a field an older writer left out keeps its default


def decode(kind: str, data: dict[str, Any]) -> Decoded:
    """A stored payload as its dataclass; fields (and kinds) this code lacks are named, not dropped."""
    cls = PAYLOADS.get(kind)
    if cls is None:
        return Decoded(None, ())
    unknown: list[str] = []
    return Decoded(_build(cls, data, "", unknown), tuple(unknown))


@dataclass(frozen=True)
class JobEvent:
    id: str  # stream id, e.g. "1718000000000-0"; WatchRequest.after_event_id resumes after it
    time: float  # Unix seconds
    job_id: str
    kind: str
    data: dict[str, Any]  # the payload as stored (a newer writer's fields included)
    blob: bytes | None = None

    @property
    def is_final(self) -> bool:
        return self.kind == EventKind.FINISHED

    def decoded(self) -> Decoded:
        return decode(self.kind, self.data)


# --- stream encoding: one Redis stream entry per event


def to_fields(payload: Payload, time: float, blob: bytes | None = None) -> dict[str, Any]:
    fields_: dict[str, Any] = {"kind": payload.KIND, "time": repr(float(time)), "data": to_json(payload)}
    if blob is not None:
        fields_["blob"] = blob
    return fields_


def from_fields(job_id: str, event_id: bytes | str, fields_: dict[bytes, bytes]) -> JobEvent:
    return JobEvent(
        id=event_id.decode() if isinstance(event_id, bytes) else event_id,
        time=float(fields_[b"time"]),
        job_id=job_id,
        kind=fields_[b"kind"].decode(),
        data=json.loads(fields_[b"data"]),
        blob=fields_.get(b"blob"),
    )
