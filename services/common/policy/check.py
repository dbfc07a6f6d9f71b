"""The gateway's prompt check: normalised term lists, then the semantic match, against the
concepts the tenant's policy refuses (docs/ARCHITECTURE.md, "Content policies")."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.common.policy.normalize import normalize
from services.common.policy.policies import ContentPolicy
from services.common.policy.semantic import Calibration, Encode, SemanticMatcher
from services.common.policy.terms import TermMatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    concept: str
    by: str  # "terms" or "semantic": for metrics and the benchmark, never sent to a client


class PromptCheck:
    def __init__(self, semantic: SemanticMatcher | None = None, terms: TermMatcher | None = None):
        self.terms = terms or TermMatcher()
        self.semantic = semantic

    @classmethod
    def with_encoder(cls, encode: Encode, encoder_sha256: str, calibration: Calibration | None = None) -> PromptCheck:
        """Term lists and, when the calibration was made for this text encoder, the semantic match."""
        calibration = calibration or Calibration.read()
        if calibration.text_encoder_sha256 != encoder_sha256:
            log.warning("prompt check: thresholds were calibrated for text encoder %s..., this one is %s...; "
                        "semantic matching is off, term lists only", calibration.text_encoder_sha256[:12],
                        encoder_sha256[:12])
            return cls()
        return cls(SemanticMatcher(encode, calibration.thresholds, calibration.anchors))

    def check_many(self, prompts: list[str], policy: ContentPolicy) -> list[Verdict | None]:
        """One verdict per prompt: the refused concept it names or means, None when it passes."""
        refused = policy.refused()
        if not refused:
            return [None] * len(prompts)
        normalized = [normalize(p) for p in prompts]
        verdicts: list[Verdict | None] = []
        for n in normalized:
            concept = self.terms.first(n.tokens, refused)
            verdicts.append(Verdict(concept, "terms") if concept else None)
        if self.semantic is not None:
            todo = [i for i, v in enumerate(verdicts) if v is None]
            found = self.semantic.matches([normalized[i].text for i in todo], refused)
            for i, concept in zip(todo, found, strict=True):
                if concept:
                    verdicts[i] = Verdict(concept, "semantic")
        return verdicts
