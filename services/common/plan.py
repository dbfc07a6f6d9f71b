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
from services.common.datasets import DatasetPlan, crossed, dataset_plan
from services.common.prompts import PromptSpec

SCHEMA_VERSION = 1


class JobKind:
    """What a job makes; the worker runs each kind with its own start (services/worker/kinds.py)."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    UPSCALE = "upscale"  # an uploaded image through the upscaler only: no base model, no sampling
    DATASET = "dataset"  # prompts x styles x seeds from noise, written as shards to a store, not as artifacts

    ALL = (TXT2IMG, IMG2IMG, INPAINT, UPSCALE, DATASET)


class Stage:
    """The steps a worker runs for every chunk of a job, in order (services/worker/stages.py)."""

    CONDITION = "condition"
    SAMPLE = "sample"
    DECODE = "decode"
    COMPOSITE = "composite"  # inpainting: the pixels outside the mask kept exactly
    UPSCALE = "upscale"  # super-resolution: after the base image is final, before it is written
    CONCEPTS = "concepts"  # the output concept check: drops an image the job's content policy blocks
    METADATA = "metadata"  # provenance written into the image file
    ENCODE = "encode"
    CREDENTIALS = "credentials"  # the delivered bytes signed: a C2PA manifest (services/worker/content_credentials.py)
    REPORT = "report"
    ARCHIVE = "archive"  # a dataset job's report: the images go into their shard (services/worker/datasets.py)


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
    # A consistency-distilled (fast) model: only consistency samplers draw with it (docs/MODEL.md, "Fast mode").
    consistency: bool = False
    # The network takes the guidance scale as its `guidance` input: one row a step, no unconditional rows.
    guidance_input: bool = False


@dataclass(frozen=True)
class UpscalerFacts:
    """What planning an upscale needs to know about one upscaler version (its manifest's
    ``upscaler`` section): identity, factor, default steps and every sampling constant."""

    name: str
    version: str
    sha256: str  # of manifest.json
    factor: int
    default_steps: int
    sigma_min: float
    sigma_max: float
    rho: float
    aug_level: float  # noise-conditioning augmentation, fixed at inference (CDM, Ho et al. 2021)
    size_multiple: int
    tile: int  # low-resolution tile side
    tile_overlap: int
    max_input_side: int
    fast: bool = False  # has the deterministic one-pass network

    @classmethod
    def of(cls, name: str, version: str, sha256: str, section: Any, fast: bool):
        """From a manifest's ``upscaler`` section: each field of this class the section has, by name
        (a subclass's extra fields too), so the gateway's facts and the worker's info never drift."""
        identity = {"name": name, "version": version, "sha256": sha256, "fast": fast}
        shared = {f.name: getattr(section, f.name) for f in fields(cls)
                  if f.name not in identity and hasattr(section, f.name)}
        return cls(**identity, **shared)


@dataclass(frozen=True)
class UpscalePlan:
    """The upscaler a job runs after its base image (or on its upload) and every value it runs with:
    the fields of ``diffusion.upscale.UpscaleParams`` plus identity, steps and the network."""

    model: str
    version: str
    sha256: str
    factor: int
    steps: int  # of the diffusion chain; 0 with `fast`
    fast: bool
    sigma_min: float
    sigma_max: float
    rho: float
    aug_level: float
    size_multiple: int
    tile: int
    tile_overlap: int

    @property
    def nfe(self) -> int:
        """Network calls per image (per tile): the chain's steps, or the one pass of the fast network."""
        return 1 if self.fast else self.steps


def upscale_plan(up: UpscalerFacts, steps: int, fast: bool) -> UpscalePlan:
    return UpscalePlan(
        model=up.name, version=up.version, sha256=up.sha256, factor=up.factor,
        steps=0 if fast else (steps or up.default_steps), fast=fast, sigma_min=up.sigma_min,
        sigma_max=up.sigma_max, rho=up.rho, aug_level=up.aug_level, size_multiple=up.size_multiple,
        tile=up.tile, tile_overlap=up.tile_overlap,
    )


@dataclass(frozen=True)
class ConceptCheckPlan:
    """The output concept classifier a job's final images go through (services/worker/concept_check.py)
    and what it drops: every concept of the classifier that the tenant's content policy blocks, with
    the policy's action on it (an image showing it is dropped under either action)."""

    model: str
    version: str
    sha256: str  # of the classifier version's manifest.json: pins its network and thresholds
    drop: dict[str, str]  # concept -> the policy's action (REFUSE or DROP)
    policy: str = ""  # the content policy's name, for the policy event


def concept_check_plan(model: str, version: str, sha256: str, concepts: tuple[str, ...], policy: str,
                       actions: dict[str, str]) -> ConceptCheckPlan:
    """The check of a classifier knowing ``concepts`` under a policy with ``actions`` (concept -> action)."""
    return ConceptCheckPlan(model, version, sha256, {c: a for c, a in sorted(actions.items()) if c in concepts},
                            policy)


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
    # The cascade's second stage, or an UPSCALE job's only one; None: no upscaling. `width` and
    # `height` are the image before it (an UPSCALE job's: the upload's size).
    upscale: UpscalePlan | None = None
    upscale_image_sha256: str = ""
    # The model takes guidance_scale as a network input (a distilled fast model): its rows are its
    # images, never doubled for classifier-free guidance.
    guidance_input: bool = False
    # A DATASET job's location and shards; None for every other kind.
    dataset: DatasetPlan | None = None
    # Prompts the gateway's prompt check refused, as (prompt index, concept): their images are never
    # made and end PROMPT_FILTERED; `policy_name` is the tenant's content policy that refused them.
    refused_prompts: tuple[tuple[int, str], ...] = ()
    policy_name: str = ""
    # The output concept check of the final images; None: none runs (no classifier installed).
    concept_check: ConceptCheckPlan | None = None
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
        """Classifier-free guidance runs: an unconditional row beside each image's (not for a model
        whose network takes the scale as an input)."""
        return self.guidance_scale != 1.0 and not self.guidance_input

    @property
    def rows(self) -> int:
        """Rows of the job's denoiser evaluations: its images, twice under classifier-free guidance."""
        return self.images_total * (2 if self.guided else 1)

    @property
    def steps_per_image(self) -> int:
        """The progress steps one image makes: its sampler's steps, then its upscaler's."""
        return self.steps_run + (self.upscale.nfe if self.upscale else 0)

    @property
    def output_width(self) -> int:
        return self.width * (self.upscale.factor if self.upscale else 1)

    @property
    def output_height(self) -> int:
        return self.height * (self.upscale.factor if self.upscale else 1)

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
        data["refused_prompts"] = tuple((int(i), str(c)) for i, c in data.get("refused_prompts", ()))
        if data.get("upscale") is not None:
            data["upscale"] = UpscalePlan(**data["upscale"])
        if data.get("concept_check") is not None:
            data["concept_check"] = ConceptCheckPlan(**data["concept_check"])
        if data.get("dataset") is not None:
            data["dataset"] = DatasetPlan(**data["dataset"])
        return cls(**data)


def job_kind(has_init_image: bool, has_mask: bool, has_upscale_image: bool = False, dataset: bool = False) -> str:
    if dataset:  # validation: a dataset job has no uploads
        return JobKind.DATASET
    if has_upscale_image:
        return JobKind.UPSCALE
    if has_mask:
        return JobKind.INPAINT
    return JobKind.IMG2IMG if has_init_image else JobKind.TXT2IMG


def stages_of(kind: str, output_format: str, upscale: bool = False, concept_check: bool = False) -> tuple[str, ...]:
    """The stages a job of ``kind`` runs; raw pixels carry no metadata; every delivered image is
    signed (its content credentials) after it is encoded, a dataset job's shards are not.

    The upscaler runs on the final base image: after inpainting's composite, which keeps the
    unmasked pixels exactly at the base size (an upload has no larger original to keep). The
    concept check judges the final image, what would leave the service, before it is written."""
    if kind == JobKind.UPSCALE:
        out = [Stage.UPSCALE]
    else:
        out = [Stage.CONDITION, Stage.SAMPLE, Stage.DECODE]
        if kind == JobKind.INPAINT:
            out.append(Stage.COMPOSITE)
        if upscale:
            out.append(Stage.UPSCALE)
    if concept_check:
        out.append(Stage.CONCEPTS)
    if output_format != "raw_rgba8":
        out.append(Stage.METADATA)
    if kind == JobKind.DATASET:
        return (*out, Stage.ENCODE, Stage.ARCHIVE)
    return (*out, Stage.ENCODE, Stage.CREDENTIALS, Stage.REPORT)


def wants_upscale(spec) -> bool:
    """The request asks for the upscaler: an image to upscale, or a cascade factor above 1."""
    return bool(spec.upscale_image) or spec.upscale > 1


def resolve(spec, model: ModelFacts | None, upscaler: UpscalerFacts | None = None,
            input_size: tuple[int, int] | None = None, concept_check: ConceptCheckPlan | None = None) -> JobPlan:
    """The plan of a valid request ``spec`` (a JobSpec) on ``model`` and, when it upscales,
    ``upscaler``. An UPSCALE job (``spec.upscale_image``) has no base model: ``model`` is None
    and ``input_size`` is its upload's (width, height). ``concept_check``: the output check its
    images go through (every kind's)."""
    upscale = None
    if wants_upscale(spec):
        if upscaler is None:
            raise ValueError("the request upscales, but no upscaler was given to plan it with")
        upscale = upscale_plan(upscaler, spec.upscale_steps, spec.upscale_fast)
    if spec.upscale_image:
        if input_size is None:
            raise ValueError("an UPSCALE job is planned with its upload's size")
        return _upscale_only(spec, upscale, input_size, concept_check)
    sampler = spec.sampler or model.default_sampler
    steps = spec.steps or model.default_steps
    strength = float(spec.strength) if spec.init_image else 0.0  # validation: in (0, 1] with an init image
    steps_run = sampler_catalog.steps_run(steps, strength)
    kind = job_kind(bool(spec.init_image), bool(spec.mask), dataset=spec.dataset is not None)
    prompts = crossed(tuple(spec.prompts), spec.dataset.styles) if spec.dataset is not None else tuple(spec.prompts)
    guidance = model.default_guidance_scale if spec.guidance_scale is None else float(spec.guidance_scale)
    return JobPlan(
        kind=kind, model=model.name, model_version=model.version, model_sha256=model.sha256,
        sampler=sampler, sampler_options=sampler_catalog.effective_options(sampler, eta=spec.eta),
        steps=steps, steps_run=steps_run, nfe=sampler_catalog.nfe(sampler, steps_run),
        guidance_scale=guidance, guidance_rescale=float(spec.guidance_rescale), schedule=dict(model.schedule),
        width=spec.width or model.width, height=spec.height or model.height, strength=strength,
        tiling=bool(spec.tiling), seeds=tuple(spec.seeds), prompts=prompts,
        output_format=spec.output_format, output_quality=spec.output_quality,
        preview_every_steps=spec.preview_every_steps,
        stages=stages_of(kind, spec.output_format, upscale is not None, concept_check is not None),
        init_image_sha256=spec.init_image_sha256, mask_sha256=spec.mask_sha256, upscale=upscale,
        guidance_input=model.guidance_input, concept_check=concept_check,
        dataset=dataset_plan(spec.dataset, spec.images_total) if spec.dataset is not None else None,
    )


def _upscale_only(spec, upscale: UpscalePlan, input_size: tuple[int, int],
                  concept_check: ConceptCheckPlan | None) -> JobPlan:
    """An UPSCALE job: no base model, no sampler (its base fields are the neutral values a
    provenance reports), the upload's size, the upscaler's plan."""
    width, height = input_size
    return JobPlan(
        kind=JobKind.UPSCALE, model="", model_version="", model_sha256="", sampler="", sampler_options={},
        steps=0, steps_run=0, nfe=0, guidance_scale=1.0, guidance_rescale=0.0, schedule={},
        width=width, height=height, strength=0.0, tiling=False, seeds=tuple(spec.seeds),
        prompts=tuple(spec.prompts), output_format=spec.output_format, output_quality=spec.output_quality,
        preview_every_steps=spec.preview_every_steps,
        stages=stages_of(JobKind.UPSCALE, spec.output_format, concept_check=concept_check is not None),
        upscale=upscale, upscale_image_sha256=spec.upscale_image_sha256, concept_check=concept_check,
    )
