"""A job resolved once, at the gateway: every value the worker runs with, typed and stored.

A request (:class:`services.common.jobs.JobSpec`) leaves things to the model: a zero width, an
empty sampler, no eta. :func:`resolve` turns it, against one model version's
:class:`ModelFacts`, into a :class:`JobPlan` in which nothing is left open (the idea of
text-generation-inference's ``ValidGenerateRequest``: parse, don't validate). The plan is
stored with the job and is what the worker executes; the worker never fills a default again,
and every artifact's provenance is read off the plan, so sending a provenance back as a
request makes the same image. Numpy-free: the gateway builds it (docs/ARCHITECTURE.md,
"Contracts: job plan").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from diffusion import sampler_catalog
from diffusion.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS
from services.common.prompts import PromptSpec

SCHEMA_VERSION = 1


class JobKind:
    """What a job makes; the worker runs each kind with its own start (services/worker/kinds.py)."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"

    ALL = (TXT2IMG, IMG2IMG, INPAINT)


class Stage:
    """The steps a worker runs for every chunk of a job, in order (services/worker/stages.py)."""

    CONDITION = "condition"
    SAMPLE = "sample"
    DECODE = "decode"
    COMPOSITE = "composite"  # inpainting: the pixels outside the mask kept exactly
    METADATA = "metadata"  # provenance written into the image file
    ENCODE = "encode"
    REPORT = "report"


@dataclass(frozen=True)
class ModelFacts:
    """What resolving a job needs to know about one model version (from its manifest)."""

    name: str
    version: str
    sha256: str  # of manifest.json: pins every file
    width: int
    height: int
    default_sampler: str = DEFAULT_SAMPLER  # the manifest's, else the library's
    default_steps: int = DEFAULT_STEPS
    default_guidance_scale: float = DEFAULT_GUIDANCE
    schedule: dict[str, Any] = field(default_factory=dict)  # the schedule's kind and parameters


@dataclass(frozen=True)
class JobPlan:
    """Every effective value of a job. Image ``i`` is prompt ``i // len(seeds)`` with seed
    ``seeds[i % len(seeds)]`` (prompt-major)."""

    kind: str
    model: str
    model_version: str
    model_sha256: str
    sampler: str
    sampler_options: dict[str, Any]  # every option of the sampler at the value that runs
    steps: int  # of the schedule, as asked (or the model's default)
    steps_run: int  # img2img and inpainting run only the schedule's last steps_run steps
    nfe: int  # denoiser evaluations per row: the sampler's cost of steps_run (Heun: 2 x steps_run - 1)
    guidance_scale: float
    guidance_rescale: float
    schedule: dict[str, Any]
    width: int
    height: int
    strength: float  # 0 for text-to-image
    tiling: bool
    seeds: tuple[int, ...]
    prompts: tuple[PromptSpec, ...]
    output_format: str
    output_quality: int
    preview_every_steps: int
    stages: tuple[str, ...]
    init_image_sha256: str = ""
    mask_sha256: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def images_total(self) -> int:
        return len(self.prompts) * len(self.seeds)

    def image(self, index: int) -> tuple[int, PromptSpec, int]:
        """(prompt_index, prompt, seed) of image ``index``."""
        prompt_index, seed_index = divmod(index, len(self.seeds))
        return prompt_index, self.prompts[prompt_index], self.seeds[seed_index]

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0

    @property
    def rows(self) -> int:
        """Rows of the job's denoiser evaluations: its images, twice under classifier-free guidance."""
        return self.images_total * (2 if self.guided else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobPlan:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"job plan schema_version {version!r} is not {SCHEMA_VERSION}, the one this code runs")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"job plan has fields this code does not know: {', '.join(unknown)}")
        data = dict(data)
        data["prompts"] = tuple(PromptSpec(**p) for p in data["prompts"])
        data["seeds"] = tuple(int(s) for s in data["seeds"])
        data["stages"] = tuple(data["stages"])
        return cls(**data)


def job_kind(has_init_image: bool, has_mask: bool) -> str:
    if has_mask:
        return JobKind.INPAINT
    return JobKind.IMG2IMG if has_init_image else JobKind.TXT2IMG


def stages_of(kind: str, output_format: str) -> tuple[str, ...]:
    """The stages a job of ``kind`` runs; raw pixels carry no metadata."""
    out = [Stage.CONDITION, Stage.SAMPLE, Stage.DECODE]
    if kind == JobKind.INPAINT:
        out.append(Stage.COMPOSITE)
    if output_format != "raw_rgba8":
        out.append(Stage.METADATA)
    return (*out, Stage.ENCODE, Stage.REPORT)


def resolve(spec, model: ModelFacts) -> JobPlan:
    """The plan of a valid request ``spec`` (a JobSpec) on ``model``."""
    sampler = spec.sampler or model.default_sampler
    steps = spec.steps or model.default_steps
    strength = float(spec.strength) if spec.init_image else 0.0  # validation: in (0, 1] with an init image
    steps_run = sampler_catalog.steps_run(steps, strength)
    kind = job_kind(bool(spec.init_image), bool(spec.mask))
    prompts = tuple(spec.prompts)
    guidance = model.default_guidance_scale if spec.guidance_scale is None else float(spec.guidance_scale)
    return JobPlan(
        kind=kind, model=model.name, model_version=model.version, model_sha256=model.sha256,
        sampler=sampler, sampler_options=sampler_catalog.effective_options(sampler, eta=spec.eta),
        steps=steps, steps_run=steps_run, nfe=sampler_catalog.nfe(sampler, steps_run),
        guidance_scale=guidance, guidance_rescale=float(spec.guidance_rescale), schedule=dict(model.schedule),
        width=spec.width or model.width, height=spec.height or model.height, strength=strength,
        tiling=bool(spec.tiling), seeds=tuple(spec.seeds), prompts=prompts,
        output_format=spec.output_format, output_quality=spec.output_quality,
        preview_every_steps=spec.preview_every_steps, stages=stages_of(kind, spec.output_format),
        init_image_sha256=spec.init_image_sha256, mask_sha256=spec.mask_sha256,
    )
