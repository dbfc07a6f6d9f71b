"""A validated request becomes its job plan here, against the catalog's model versions."""

from __future__ import annotations

from services.common import uploads
from services.common.jobs import JobSpec
from services.common.plan import ConceptCheckPlan, ModelFacts, concept_check_plan, resolve
from services.gateway import upscaling
from services.gateway.catalog import ModelEntry


def facts_of(entry: ModelEntry) -> ModelFacts:
    """What resolving a job needs of a version, from its manifest."""
    m = entry.manifest
    # The sigmas a worker draws: the training process and the spacing it samples it with.
    schedule = {k: v for k, v in m.schedule.to_dict().items() if v is not None}
    schedule["spacing"] = m.defaults.schedule
    return ModelFacts(entry.name, entry.version, entry.sha256, m.image.width, m.image.height,
                      m.defaults.sampler, m.defaults.steps, m.defaults.guidance_scale, schedule,
                      consistency=m.unet.consistency, guidance_input=m.unet.guidance_input)


def concept_check_of(concepts: ModelEntry | None, policy) -> ConceptCheckPlan | None:
    """The output check of a job under ``policy`` (a services.common.policy ContentPolicy) with the
    catalog's concept classifier: None when there is none, or when the policy blocks none of the
    concepts it knows (it could then drop nothing)."""
    if concepts is None or policy is None:
        return None
    check = concept_check_plan(concepts.name, concepts.version, concepts.sha256, concepts.manifest.concepts.concepts,
                               policy.name, policy.actions)
    return check if check.drop else None


def planned(spec: JobSpec, entry: ModelEntry | None, upscaler: ModelEntry | None = None,
            concepts: ModelEntry | None = None, policy=None) -> JobSpec:
    """``spec`` pinned to ``entry`` (none for an UPSCALE job) and ``upscaler`` (when it upscales)
    and carrying its plan: what is stored and run. ``concepts`` (the catalog's concept classifier)
    and the tenant's content ``policy`` decide the output check (:func:`concept_check_of`)."""
    pinned = spec
    if entry is not None:
        pinned = pinned.with_(model=entry.name, model_version=entry.version)
    if upscaler is not None:
        pinned = pinned.with_(upscaler=upscaler.name, upscaler_version=upscaler.version)
    input_size = uploads.size(spec.upscale_image) if spec.upscale_image is not None else None
    plan = resolve(pinned, facts_of(entry) if entry is not None else None,
                   upscaling.facts_of(upscaler) if upscaler is not None else None, input_size,
                   concept_check_of(concepts, policy))
    return pinned.with_(plan=plan)
