"""The content policy in force for a tenant, and the prompt check of a submission.

A tenant's policy is the service's default (Settings.content_policy) changed by its entry in
the keys file's `policies` (services.gateway.auth.KeyRing), read again when the file changes. A
submission's prompts (not its negative prompts: naming what to avoid is how a studio steers away
from it) go through the prompt check (services.common.policy.check); a single prompt it refuses,
a bulk job all of whose prompts it refuses, or a dataset job with any, is answered with
PromptRefused (INVALID_ARGUMENT with an ErrorInfo naming the concept, never the words that
matched); a bulk job's refused variants are kept in its plan (`refused_prompts`), so the worker
reports their images PROMPT_FILTERED and the other prompts proceed (docs/API.md, "Content policy").
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from repository.reader import ModelRepository, ModelRepositoryError
from repository.text_encoder import TextEncoder
from services.common.jobs import JobSpec
from services.common.policy.check import PromptCheck
from services.common.policy.concepts import Check
from services.common.policy.policies import ContentPolicy, PolicyError, default_policy, tenant_policy
from services.common.settings import Settings
from services.gateway import metrics
from services.gateway.auth import KeyRing
from services.gateway.errors import PromptRefused

log = logging.getLogger(__name__)


class ContentPolicies:
    def __init__(self, default: ContentPolicy, documents: Callable[[str], Any], check: PromptCheck):
        self.default, self.documents, self.check = default, documents, check

    @classmethod
    def terms_only(cls) -> ContentPolicies:
        """The default policy for every tenant, checked with the term lists alone."""
        return cls(default_policy(), lambda tenant: None, PromptCheck())

    def for_tenant(self, tenant: str) -> ContentPolicy:
        try:
            return tenant_policy(self.default, tenant, self.documents(tenant))
        except PolicyError:
            # An operator's typo must not open the gate: the default policy applies, loudly.
            log.exception("content policy of tenant %r is invalid; the default policy applies", tenant)
            return self.default

    def screen(self, tenant: str, spec: JobSpec, bulk: bool) -> JobSpec:
        """`spec` with the prompts the policy refuses in its plan; PromptRefused when none would be left."""
        policy = self.for_tenant(tenant)
        if spec.plan is None or spec.upscale_image is not None or not spec.prompts:
            return spec
        verdicts = self.check.check_many([p.prompt for p in spec.prompts], policy)
        refused = tuple((i, v.concept) for i, v in enumerate(verdicts) if v is not None)
        for _, concept in refused:
            metrics.POLICY_DECISIONS.labels(concept=concept, action=policy.action(concept), check=Check.PROMPT,
                                            tenant=tenant).inc()
        # A dataset job writes shards, not artifacts: it has no per-image filtered result to carry.
        if refused and (not bulk or len(refused) == len(spec.prompts) or spec.dataset is not None):
            metrics.REJECTED.labels(reason="content_policy").inc()
            index, concept = refused[0]
            raise PromptRefused(concept, policy.name, f"prompts[{index}].prompt" if bulk else "prompt")
        if not refused:
            return spec
        return spec.with_(plan=dataclasses.replace(spec.plan, refused_prompts=refused, policy_name=policy.name))


def from_settings(settings: Settings, keys: KeyRing) -> ContentPolicies:
    """The default policy from the settings, tenants' policies from the keys file, and the prompt
    check with the default model's own text encoder (term lists alone, with a warning, when the
    repository has no such model or it has no text encoder)."""
    check = PromptCheck()
    try:
        encoder = TextEncoder(ModelRepository(settings.model_repository).open(settings.default_model))
        check = PromptCheck.with_encoder(encoder.pooled, encoder.file_sha256)
    except (ModelRepositoryError, ValueError, KeyError) as exc:
        log.warning("prompt check: no text encoder of %s (%s); term lists only", settings.default_model, exc)
    return ContentPolicies(default_policy(settings.content_policy), keys.policy_document, check)
