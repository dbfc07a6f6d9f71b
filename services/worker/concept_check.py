"""The concept stage: every final image through the output concept classifier (issue 15's output check).

It runs after decoding (and after inpainting's composite and the upscaler: on exactly what would
leave the service), before the metadata, encoding and report stages. An image showing a concept
that the job's content policy blocks (``plan.concept_check.drop``) is never encoded, stored or
returned: the stage reports it at once as an artifact with ``FinishReason.FILTERED``, the
concept, no image data, and a policy event (check OUTPUT, the concept, the policy's action),
and takes it off the chunk, so the later stages see only the images that pass. Nothing is
blanked or blurred. An image showing several blocked concepts is reported under the likeliest.
The job's plan names the classifier version and its manifest sha256, like a model's, so the
check that judged an image is pinned (docs/ARCHITECTURE.md, "Where a new stage or job kind goes").
"""

from __future__ import annotations

import numpy as np

from services.common import events as ev
from services.common import metrics
from services.common.jobs import FinishReason
from services.common.policy.concepts import Check
from services.worker.stages import Chunk, provenance_of


def _drop(chunk: Chunk, row: int, concept: str) -> None:
    job, check = chunk.job, chunk.job.plan.concept_check
    index = chunk.indices[row]
    prompt_index, _, seed = job.plan.image(index)
    height, width = chunk.rgba.shape[1:3]
    job.reporter.check()
    job.reporter.artifact(ev.Artifact(index=index, width=int(width), height=int(height), seed=seed,
                                      finish_reason=FinishReason.FILTERED,
                                      provenance=ev.Provenance(**provenance_of(chunk, row)),
                                      prompt_index=prompt_index, concept=concept), b"")
    action = check.drop[concept]
    job.reporter.policy(ev.Policy(check=Check.OUTPUT, concept=concept, action=action, prompt_index=prompt_index,
                                  indices=(index,), policy=check.policy))
    metrics.POLICY_DECISIONS.labels(concept=concept, action=action, check=Check.OUTPUT, tenant=job.tenant).inc()
    job.made += 1


def check(chunk: Chunk) -> None:
    job = chunk.job
    drop = job.plan.concept_check.drop
    probabilities = job.concepts.probabilities(chunk.rgba)
    thresholds = np.asarray(job.concepts.info.thresholds, dtype=np.float32)
    concepts = job.concepts.info.concepts
    keep = []
    for row, p in enumerate(probabilities):
        blocked = [(p[j], c) for j, c in enumerate(concepts) if c in drop and p[j] >= thresholds[j]]
        if blocked:
            _drop(chunk, row, max(blocked)[1])
        else:
            keep.append(row)
    if len(keep) < len(chunk.indices):
        chunk.indices = [chunk.indices[r] for r in keep]
        chunk.rgba = chunk.rgba[keep]
