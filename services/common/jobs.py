"""A job as the services see it: plain dataclasses, no protobuf.

The gateway turns a `GenerateRequest` into a :class:`JobSpec` (and a stored
:class:`JobRecord` back into an `atelier.v1.Job`); workers only ever see these types.
Enum-like values are strings named after the proto enums without their prefix
(`JOB_STATE_RUNNING` -> "RUNNING", `SAMPLER_DPMPP_2M` -> "dpmpp_2m" as in
`diffusion.samplers.SAMPLERS`), so the mapping is mechanical both ways.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from services.common.datasets import DatasetRequest
from services.common.plan import JobPlan
from services.common.prompts import PromptSpec

__all__ = ["UPLOADS", "ErrorCode", "FinishReason", "JobRecord", "JobSpec", "JobState", "OutputFormat", "Priority",
           "PromptSpec"]


class JobState:
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    ALL = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, EXPIRED)
    FINAL = (SUCCEEDED, FAILED, CANCELLED, EXPIRED)
    ACTIVE = (QUEUED, RUNNING)


class ErrorCode:
    """Names of `atelier.v1.ErrorCode` without the prefix; "" is ERROR_CODE_UNSPECIFIED."""

    NONE = ""
    INVALID_INPUT = "INVALID_INPUT"
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    NUMERICAL = "NUMERICAL"
    TIMEOUT = "TIMEOUT"
    INTERNAL = "INTERNAL"


class FinishReason:
    """Why an artifact is as it is: `atelier.v1.FinishReason` names without the prefix."""

    COMPLETED = "COMPLETED"  # sampling ran every step of the plan
    FILTERED = "FILTERED"  # the output check withheld the image (the content policy's concept)
    PROMPT_FILTERED = "PROMPT_FILTERED"  # the prompt check refused its prompt: never generated

    ALL = (COMPLETED, FILTERED, PROMPT_FILTERED)
    WITHHELD = (FILTERED, PROMPT_FILTERED)  # the artifact carries no image


class Priority:
    """Queue names; `atelier.v1.Priority` INTERACTIVE/UNSPECIFIED -> "interactive", BATCH -> "batch"."""

    INTERACTIVE = "interactive"
    BATCH = "batch"

    ALL = (INTERACTIVE, BATCH)


class OutputFormat:
    """`atelier.v1.OutputFormat` names, lower case; UNSPECIFIED -> "png"."""

    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"
    RAW_RGBA8 = "raw_rgba8"

    ALL = (PNG, JPEG, WEBP, RAW_RGBA8)


# The binary fields of a JobSpec: stored in the job record beside its JSON, not in it.
UPLOADS = ("init_image", "mask", "upscale_image")


@dataclass(frozen=True)
class JobSpec:
    """What to generate, as asked, and once the gateway accepts it, its resolved `plan`.

    Zero / empty / None fields mean "the model's default"; the gateway resolves them against
    the model version once (services/common/plan.py) and stores the plan with the job. The
    worker runs the plan and nothing else.
    Every prompt gets one image per seed: `images_total = len(prompts) * len(seeds)`, in the
    order of `JobPlan.image`.
    """

    prompts: tuple[PromptSpec, ...]
    seeds: tuple[int, ...]
    model: str = ""
    model_version: str = ""
    width: int = 0
    height: int = 0
    steps: int = 0
    sampler: str = ""
    guidance_scale: float | None = None
    guidance_rescale: float = 0.0
    eta: float | None = None
    init_image: bytes | None = None
    strength: float = 0.0
    mask: bytes | None = None
    tiling: bool = False
    output_format: str = OutputFormat.PNG
    output_quality: int = 0
    priority: str = Priority.INTERACTIVE
    deadline: float | None = None  # Unix time in seconds
    preview_every_steps: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    upscale: int = 0  # the cascade's factor; 0 or 1: none
    upscale_steps: int = 0
    upscaler: str = ""
    upscaler_version: str = ""
    upscale_fast: bool = False
    upscale_image: bytes | None = None  # an UPSCALE job's input
    dataset: DatasetRequest | None = None  # a DATASET job's output and shards (services/common/datasets.py)
    plan: JobPlan | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.prompts or not self.seeds:
            raise ValueError("a job needs at least one prompt and one seed")
        if self.priority not in Priority.ALL:
            raise ValueError(f"priority must be one of {Priority.ALL}, got {self.priority!r}")
        if self.output_format not in OutputFormat.ALL:
            raise ValueError(f"output_format must be one of {OutputFormat.ALL}, got {self.output_format!r}")

    @property
    def images_total(self) -> int:
        styles = len(self.dataset.styles) if self.dataset is not None and self.dataset.styles else 1
        return len(self.prompts) * styles * len(self.seeds)

    @property
    def init_image_sha256(self) -> str:
        return hashlib.sha256(self.init_image).hexdigest() if self.init_image else ""

    @property
    def mask_sha256(self) -> str:
        return hashlib.sha256(self.mask).hexdigest() if self.mask else ""

    @property
    def upscale_image_sha256(self) -> str:
        return hashlib.sha256(self.upscale_image).hexdigest() if self.upscale_image else ""

    def to_json(self) -> str:
        """JSON of everything but the (binary) uploads, which are stored apart."""
        data = asdict(self)
        for upload in UPLOADS:
            data.pop(upload)
        if data["plan"] is None:
            data.pop("plan")
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, init_image: bytes | None = None, mask: bytes | None = None,
                  upscale_image: bytes | None = None) -> JobSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["prompts"] = tuple(PromptSpec(**p) for p in data["prompts"])
        data["init_image"] = init_image or None
        data["mask"] = mask or None
        data["upscale_image"] = upscale_image or None
        data["plan"] = _read_plan(data.get("plan"))
        if data.get("dataset") is not None:
            data["dataset"] = DatasetRequest(**data["dataset"])
        return cls(**data)

    def with_(self, **changes: Any) -> JobSpec:
        return replace(self, **changes)


def _read_plan(data: dict[str, Any] | None) -> JobPlan | None:
    """The stored plan, or None when there is none or it is of a schema this code cannot run
    (a worker then fails the job, INVALID_INPUT; GetJob and Watch still read the record)."""
    if not data:
        return None
    try:
        return JobPlan.from_dict(data)
    except ValueError as err:
        logging.getLogger(__name__).warning("a stored job plan cannot be read: %s", err)
        return None


@dataclass(frozen=True)
class JobRecord:
    """A stored job: its spec plus what has happened to it so far."""

    job_id: str
    tenant: str
    spec: JobSpec
    state: str = JobState.QUEUED
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 0  # 1 on the first run; more when a worker was lost mid-job
    worker: str = ""
    steps_done: int = 0
    steps_total: int = 0
    images_done: int = 0
    shards_done: int = 0  # a dataset job's shards written
    error_code: str = ErrorCode.NONE
    error_message: str = ""
    last_event_id: str = ""
    kind: str = ""  # a services.common.plan.JobKind; "" for a record stored before kinds were

    @property
    def images_total(self) -> int:
        return self.spec.images_total

    @property
    def is_final(self) -> bool:
        return self.state in JobState.FINAL
