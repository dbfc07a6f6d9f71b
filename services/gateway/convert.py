"""Protobuf <-> domain types: the only place the gateway's logic meets `atelier.v1`.

Enums become the strings of :mod:`services.common.jobs` mechanically (`SAMPLER_DPMPP_2M`
<-> "dpmpp_2m", `JOB_STATE_RUNNING` <-> "RUNNING"); durations travel as seconds in
fields ending in `_seconds`; timestamps as Unix seconds.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import secrets
import struct

from google.protobuf import duration_pb2, timestamp_pb2

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import models_pb2, types_pb2
from services.common import events as ev
from services.common.datasets import DatasetRequest
from services.common.events import JobEvent
from services.common.jobs import JobRecord, JobSpec, OutputFormat, Priority, PromptSpec
from services.common.policy import concepts
from services.common.policy.policies import ContentPolicy
from services.common.store import HistoryFilter, ImageMatch
from services.gateway import metrics
from services.gateway.catalog import ModelEntry
from services.gateway.history import HistoryQuery, page_size
from services.gateway.validation import Violation

log = logging.getLogger(__name__)

# google.protobuf.Timestamp's valid seconds: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)

# --- enums


def _enum_name(enum, value: int) -> str | None:
    try:
        return enum.Name(value)
    except ValueError:
        return None


def sampler_from_pb(value: int) -> str | None:
    """"" for UNSPECIFIED, the sampler's name, or None for a number the contract lacks."""
    name = _enum_name(types_pb2.Sampler, value)
    if name is None:
        return None
    return "" if value == types_pb2.SAMPLER_UNSPECIFIED else name.removeprefix("SAMPLER_").lower()


def sampler_to_pb(name: str) -> int:
    if not name:
        return types_pb2.SAMPLER_UNSPECIFIED
    return types_pb2.Sampler.Value("SAMPLER_" + name.upper())


def priority_from_pb(value: int) -> str | None:
    return {
        types_pb2.PRIORITY_UNSPECIFIED: Priority.INTERACTIVE,
        types_pb2.PRIORITY_INTERACTIVE: Priority.INTERACTIVE,
        types_pb2.PRIORITY_BATCH: Priority.BATCH,
    }.get(value)


def priority_to_pb(name: str) -> int:
    return types_pb2.PRIORITY_BATCH if name == Priority.BATCH else types_pb2.PRIORITY_INTERACTIVE


def output_format_from_pb(value: int) -> str | None:
    if value == types_pb2.OUTPUT_FORMAT_UNSPECIFIED:
        return OutputFormat.PNG
    name = _enum_name(types_pb2.OutputFormat, value)
    return name.removeprefix("OUTPUT_FORMAT_").lower() if name else None


def state_to_pb(state: str) -> int:
    return types_pb2.JobState.Value("JOB_STATE_" + state) if state else types_pb2.JOB_STATE_UNSPECIFIED


def error_code_to_pb(code: str) -> int:
    return types_pb2.ErrorCode.Value("ERROR_CODE_" + code) if code else types_pb2.ERROR_CODE_UNSPECIFIED


def kind_to_pb(kind: str) -> int:
    """A job kind's number; a kind the contract lacks (a newer gateway's) is UNSPECIFIED."""
    if not kind:
        return types_pb2.JOB_KIND_UNSPECIFIED
    try:
        return types_pb2.JobKind.Value("JOB_KIND_" + kind.upper())
    except ValueError:
        return types_pb2.JOB_KIND_UNSPECIFIED


def finish_reason_to_pb(reason: str) -> int:
    return types_pb2.FinishReason.Value("FINISH_REASON_" + reason) if reason else 0


def policy_action_to_pb(action: str) -> int:
    return types_pb2.PolicyAction.Value("POLICY_ACTION_" + action) if action else 0


def policy_check_to_pb(check: str) -> int:
    return types_pb2.PolicyCheck.Value("POLICY_CHECK_" + check) if check else 0


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(round(seconds * 1e9)))
    return ts


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(round(max(0.0, seconds) * 1e9)))
    return d


# --- requests


def spec_from_pb(
    req: gen.GenerateRequest, *, max_images: int, max_dataset_images: int = 100_000
) -> tuple[JobSpec, list[Violation], bool]:
    """(spec, violations only the wire form shows, whether it is a bulk job).

    Seeds are drawn here when the request leaves them to the service, so the handle and
    every artifact can report them. Values the spec cannot hold (an enum number the
    contract lacks) are reported and replaced by the default, so that validation can
    still report every other bad field in the same answer.
    """
    out: list[Violation] = []
    bulk = len(req.prompts) > 0
    dataset = _dataset(req)
    if dataset is not None:
        max_images = max_dataset_images
    if bulk:
        if req.prompt:
            out.append(("prompt", "must be empty when prompts is set (a bulk job)"))
        prompts = tuple(
            PromptSpec(p.prompt, p.negative_prompt or req.negative_prompt, p.style or req.style) for p in req.prompts
        )
    else:
        prompts = (PromptSpec(req.prompt, req.negative_prompt, req.style),)

    if req.seeds:
        seeds = tuple(req.seeds)
    else:
        count = req.count or 1
        if count > max_images:
            out.append(("count", f"{count} images is over the limit of {max_images} a job"))
            count = 1
        seeds = tuple(secrets.randbits(64) for _ in range(count))

    sampler = sampler_from_pb(req.sampler)
    if sampler is None:
        out.append(("sampler", f"unknown sampler number {req.sampler}"))
    priority = priority_from_pb(req.priority)
    if priority is None:
        out.append(("priority", f"unknown priority number {req.priority}"))
    elif dataset is not None:  # bulk work: it waits behind interactive jobs
        if req.priority == types_pb2.PRIORITY_INTERACTIVE:
            out.append(("priority", "a dataset job runs at batch priority: PRIORITY_BATCH or unspecified"))
        priority = Priority.BATCH
    output_format = output_format_from_pb(req.output_format)
    if output_format is None:
        out.append(("output_format", f"unknown output format number {req.output_format}"))

    init_image = _upload(req, "init_image", out)
    mask = _upload(req, "mask", out)
    upscale_image = _upload(req, "upscale_image", out)
    spec = JobSpec(
        prompts=prompts,
        seeds=seeds,
        model=req.model,
        model_version=req.model_version,
        width=req.width,
        height=req.height,
        steps=req.steps,
        sampler=sampler or "",
        guidance_scale=decimal_of_float32(req.guidance_scale) if req.HasField("guidance_scale") else None,
        guidance_rescale=decimal_of_float32(req.guidance_rescale),
        eta=decimal_of_float32(req.eta) if req.HasField("eta") else None,
        init_image=init_image,
        strength=decimal_of_float32(req.strength),
        mask=mask,
        tiling=req.tiling,
        output_format=output_format or OutputFormat.PNG,
        output_quality=req.output_quality,
        priority=priority or Priority.INTERACTIVE,
        deadline=_deadline(req, out),
        preview_every_steps=req.preview_every_steps,
        labels=dict(req.labels),
        request_id=req.request_id,
        upscale=req.upscale,
        upscale_steps=req.upscale_steps,
        upscaler=req.upscaler,
        upscaler_version=req.upscaler_version,
        upscale_fast=req.upscale_fast,
        upscale_image=upscale_image,
        dataset=dataset,
    )
    return spec, out, bulk


def _dataset(req: gen.GenerateRequest) -> DatasetRequest | None:
    if not req.HasField("dataset"):
        return None
    d = req.dataset
    return DatasetRequest(d.output, d.shard_size, tuple(d.styles))


def decimal_of_float32(value: float) -> float:
    """The shortest decimal that a float field's 32 bits stand for: a client's 0.6 arrives as
    0.6000000238418579 and is planned, recorded and shown as 0.6 (9 digits always suffice)."""
    for digits in range(1, 10):
        shortest = float(f"{value:.{digits}g}")
        try:
            if struct.unpack("<f", struct.pack("<f", shortest))[0] == value:
                return shortest
        except OverflowError:  # rounded past float32's largest: more digits come back under it
            continue
    return value  # NaN, which validation refuses


def _deadline(req: gen.GenerateRequest, out: list[Violation]) -> float | None:
    return _timestamp_seconds("deadline", req.deadline, out) if req.HasField("deadline") else None


def _timestamp_seconds(field: str, ts: timestamp_pb2.Timestamp, out: list[Violation]) -> float | None:
    """Unix seconds of a Timestamp field, or None with each way it is outside a Timestamp's range."""
    low, high = TIMESTAMP_SECONDS
    valid = True
    if not low <= ts.seconds <= high:
        out.append((field, f"seconds {ts.seconds} is outside a Timestamp's range, {low} to {high}"
                           " (0001-01-01 to 9999-12-31)"))
        valid = False
    if not 0 <= ts.nanos <= 999_999_999:
        out.append((field, f"nanos {ts.nanos} is outside a Timestamp's range, 0 to 999999999"))
        valid = False
    return ts.seconds + ts.nanos / 1e9 if valid else None


def _upload(req: gen.GenerateRequest, name: str, out: list[Violation]) -> bytes | None:
    if not req.HasField(name):
        return None
    data = getattr(req, name).data
    if not data:
        out.append((f"{name}.data", "must not be empty when the image is set"))
        return None
    return bytes(data)


# --- responses


def handle_to_pb(record: JobRecord, existing: bool, position: int, eta_seconds: float) -> gen.JobHandle:
    return gen.JobHandle(
        job_id=record.job_id,
        state=state_to_pb(record.state),
        seeds=record.spec.seeds,
        existing=existing,
        queue_position=position,
        eta=duration(eta_seconds),
        created_at=timestamp(record.created_at),
    )


def job_to_pb(r: JobRecord) -> gen.Job:
    job = gen.Job(
        job_id=r.job_id,
        state=state_to_pb(r.state),
        # An UPSCALE job runs no base model: its upscaler is the model it ran.
        model=r.spec.model or r.spec.upscaler,
        model_version=r.spec.model_version or r.spec.upscaler_version,
        priority=priority_to_pb(r.spec.priority),
        created_at=timestamp(r.created_at),
        steps_done=r.steps_done,
        steps_total=r.steps_total,
        images_done=r.images_done,
        images_total=r.images_total,
        seeds=r.spec.seeds,
        error_code=error_code_to_pb(r.error_code),
        error_message=r.error_message,
        labels=r.spec.labels,
        request_id=r.spec.request_id,
        last_event_id=r.last_event_id,
        kind=kind_to_pb(r.kind),
        shards_done=r.shards_done,
    )
    dataset = r.spec.plan.dataset if r.spec.plan is not None else None
    if dataset is not None:
        job.shards_total, job.dataset_output = dataset.shards_total, dataset.output
    if r.started_at is not None:
        job.started_at.CopyFrom(timestamp(r.started_at))
    if r.finished_at is not None:
        job.finished_at.CopyFrom(timestamp(r.finished_at))
    if r.spec.deadline is not None:
        job.deadline.CopyFrom(timestamp(r.spec.deadline))
    return job


def queued_to_pb(p: ev.Queued) -> gen.Queued:
    return gen.Queued(position=p.position, eta=duration(p.eta_seconds), queue=p.queue)


def started_to_pb(p: ev.Started) -> gen.Started:
    return gen.Started(worker=p.worker, execution_provider=p.execution_provider,
                       queued_for=duration(p.queued_for_seconds), attempt=p.attempt)


def progress_to_pb(p: ev.Progress) -> gen.Progress:
    return gen.Progress(step=p.step, total_steps=p.total_steps, eta=duration(p.eta_seconds),
                        images_done=p.images_done, shards_done=p.shards_done, shards_total=p.shards_total)


def preview_to_pb(p: ev.Preview, jpeg: bytes | None) -> gen.Preview:
    return gen.Preview(jpeg=jpeg or b"", width=p.width, height=p.height, index=p.index, step=p.step)


def provenance_to_pb(p: ev.Provenance) -> types_pb2.Provenance:
    return types_pb2.Provenance(
        model_name=p.model_name,
        model_version=p.model_version,
        model_sha256=p.model_sha256,
        sampler=sampler_to_pb(p.sampler),
        steps=p.steps,
        steps_run=p.steps_run,
        guidance_scale=p.guidance_scale,
        seed=p.seed,
        prompt=p.prompt,
        negative_prompt=p.negative_prompt,
        style=p.style,
        width=p.width,
        height=p.height,
        strength=p.strength,
        tiling=p.tiling,
        init_image_sha256=p.init_image_sha256,
        mask_sha256=p.mask_sha256,
        software_version=p.software_version,
        guidance_rescale=p.guidance_rescale,
        eta=p.eta,
        upscale=p.upscale,
        upscaler_name=p.upscaler_name,
        upscaler_version=p.upscaler_version,
        upscaler_sha256=p.upscaler_sha256,
        upscale_steps=p.upscale_steps,
        upscale_fast=p.upscale_fast,
        upscale_image_sha256=p.upscale_image_sha256,
    )


def artifact_to_pb(p: ev.Artifact, data: bytes | None) -> gen.Artifact:
    return gen.Artifact(
        index=p.index,
        data=data or b"",
        mime_type=p.mime_type,
        width=p.width,
        height=p.height,
        seed=p.seed,
        finish_reason=finish_reason_to_pb(p.finish_reason),
        provenance=provenance_to_pb(p.provenance),
        prompt_index=p.prompt_index,
        concept=p.concept,
        content_credentials=base64.b64decode(p.content_credentials),
    )


_PROVENANCE_FIELDS = {f.name for f in dataclasses.fields(ev.Provenance)}


def image_matches_to_pb(matches: list[ImageMatch]) -> gen.LookupImageResponse:
    out = []
    for m in matches:
        recorded = json.loads(m.provenance_json)
        provenance = ev.Provenance(**{k: v for k, v in recorded.items() if k in _PROVENANCE_FIELDS})
        out.append(gen.ImageMatch(
            job_id=m.job_id, index=m.index, exact=m.exact, phash_distance=m.likeness.phash_distance,
            thumbnail_psnr=m.likeness.psnr_16, delivered_at=timestamp(m.created_at), mime_type=m.mime_type,
            provenance=provenance_to_pb(provenance),
        ))
    return gen.LookupImageResponse(matches=out)


def finished_to_pb(p: ev.Finished) -> gen.Finished:
    return gen.Finished(state=state_to_pb(p.state), error_code=error_code_to_pb(p.error_code),
                        error_message=p.error_message, images=p.images, elapsed=duration(p.elapsed_seconds),
                        images_filtered=p.images_filtered)


def content_policy_to_pb(policy: ContentPolicy) -> types_pb2.ContentPolicy:
    return types_pb2.ContentPolicy(
        name=policy.name, vocabulary=list(concepts.NAMES),
        rules=[types_pb2.ConceptRule(concept=c, action=policy_action_to_pb(a),
                                     description=concepts.BY_NAME[c].description) for c, a in policy.rules])


def policy_to_pb(p: ev.Policy) -> gen.PolicyDecision:
    return gen.PolicyDecision(check=policy_check_to_pb(p.check), concept=p.concept,
                              action=policy_action_to_pb(p.action), prompt_index=p.prompt_index,
                              indices=list(p.indices), policy=p.policy)


def event_to_pb(e: JobEvent) -> gen.JobEvent:
    """The event as `atelier.v1.JobEvent`. A kind this gateway does not know goes out with no
    `event` case set (its id still lets a client resume past it); a field it does not know is
    left out. Both are logged once and counted (docs/ARCHITECTURE.md, "Event contract")."""
    out = gen.JobEvent(id=e.id, time=timestamp(e.time), job_id=e.job_id)
    decoded = e.decoded()
    if decoded.payload is None:
        _report_unknown(e.kind, "")
    for name in decoded.unknown:
        _report_unknown(e.kind, name)
    p = decoded.payload
    if isinstance(p, ev.Queued):
        out.queued.CopyFrom(queued_to_pb(p))
    elif isinstance(p, ev.Started):
        out.started.CopyFrom(started_to_pb(p))
    elif isinstance(p, ev.Progress):
        out.progress.CopyFrom(progress_to_pb(p))
    elif isinstance(p, ev.Preview):
        out.preview.CopyFrom(preview_to_pb(p, e.blob))
    elif isinstance(p, ev.Artifact):
        out.artifact.CopyFrom(artifact_to_pb(p, e.blob))
    elif isinstance(p, ev.Finished):
        out.finished.CopyFrom(finished_to_pb(p))
    elif isinstance(p, ev.Policy):
        out.policy.CopyFrom(policy_to_pb(p))
    return out


_reported: set[tuple[str, str]] = set()


def _report_unknown(kind: str, field: str) -> None:
    """A newer writer's kind (field "") or field: counted each time, logged once per kind and field."""
    metrics.UNKNOWN_EVENT_FIELDS.labels(kind=kind, field=field).inc()
    if (kind, field) in _reported:
        return
    _reported.add((kind, field))
    if field:
        log.warning("event kind %r has a field %r this gateway does not know: left out of JobEvent", kind, field)
    else:
        log.warning("event kind %r is unknown to this gateway: sent with no event case set", kind)


def cancel_to_pb(state: str, cancelled: bool) -> gen.CancelJobResponse:
    return gen.CancelJobResponse(state=state_to_pb(state), cancelled=cancelled)


def model_to_pb(e: ModelEntry) -> models_pb2.ModelInfo:
    if e.is_upscaler:
        return upscaler_to_pb(e)
    m = e.manifest
    return models_pb2.ModelInfo(
        name=e.name,
        version=e.version,
        width=m.image.width,
        height=m.image.height,
        latent_channels=m.latent.channels,
        latent_height=m.latent.height,
        latent_width=m.latent.width,
        latent_factor=m.latent.factor,
        size_step=e.size_multiple,
        styles=m.styles,
        samplers=[sampler_to_pb(s) for s in e.samplers],
        default_sampler=sampler_to_pb(m.defaults.sampler),
        default_steps=m.defaults.steps,
        default_guidance_scale=m.defaults.guidance_scale,
        ready=e.ready,
        sha256=e.sha256,
        description=m.description,
        max_size=e.max_size,
        min_size=e.min_size,
        other_sizes=e.other_sizes,
        supports_tiling=e.supports_tiling,
        supports_init_image=e.supports_init_image,
        fast=e.fast,
        guidance_min=(m.unet.guidance_range or (0.0, 0.0))[0],
        guidance_max=(m.unet.guidance_range or (0.0, 0.0))[1],
    )


def upscaler_to_pb(e: ModelEntry) -> models_pb2.ModelInfo:
    """An upscaler's entry: its factor, input limit, steps and networks; no image or sampler fields."""
    u = e.manifest.upscaler
    return models_pb2.ModelInfo(
        name=e.name,
        version=e.version,
        default_steps=u.default_steps,
        ready=e.ready,
        sha256=e.sha256,
        description=e.manifest.description,
        upscale_factor=u.factor,
        max_input_side=u.max_input_side,
        fast_upscaler=e.fast_upscaler,
    )


# --- job history


def _filter_values(enum, prefix: str, field: str, values, out: list[Violation]) -> list[str]:
    """The names (without `prefix`) of a repeated enum filter; UNSPECIFIED and unknown numbers are violations."""
    names = []
    for i, value in enumerate(values):
        name = _enum_name(enum, value)
        if name is None or value == 0:
            out.append((f"{field}[{i}]", f"not a job {field[:-1]}: {value}"))
        else:
            names.append(name.removeprefix(prefix))
    return names


def history_query_from_pb(req: gen.ListJobsRequest) -> tuple[HistoryQuery, list[Violation]]:
    """The query and every bad field of a ListJobs request (numbers the contract lacks,
    UNSPECIFIED as a filter value, bounds out of order)."""
    out: list[Violation] = []
    # JobState names are the store's as they are ("RUNNING"); JobKind's are lower case ("txt2img").
    states = {name for name in _filter_values(types_pb2.JobState, "JOB_STATE_", "states", req.states, out)}
    kinds = {name.lower() for name in _filter_values(types_pb2.JobKind, "JOB_KIND_", "kinds", req.kinds, out)}
    bounds = {}
    for name in ("created_after", "created_before"):
        if req.HasField(name) and (seconds := _timestamp_seconds(name, getattr(req, name), out)) is not None:
            bounds[name] = seconds
    after, before = bounds.get("created_after"), bounds.get("created_before")
    if after is not None and before is not None and before <= after:
        out.append(("created_before", "must be later than created_after"))
    where = HistoryFilter(frozenset(states), frozenset(kinds), after, before)
    return HistoryQuery(page_size(req.page_size, out), req.page_token, where), out


def jobs_page_to_pb(records: list[JobRecord], next_page_token: str) -> gen.ListJobsResponse:
    return gen.ListJobsResponse(jobs=[job_to_pb(r) for r in records], next_page_token=next_page_token)
