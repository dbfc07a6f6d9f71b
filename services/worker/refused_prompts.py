"""A bulk job's prompts that the gateway's prompt check refused (JobPlan.refused_prompts): their
images are never sampled; each such prompt gets a policy event, then each of its images an
artifact with no image, FINISH_REASON_PROMPT_FILTERED and the concept (docs/API.md, "Content policy")."""

from __future__ import annotations

from services.common import events as ev
from services.common.jobs import FinishReason
from services.common.plan import JobPlan
from services.common.policy.concepts import Action, Check


def withhold(plan: JobPlan, reporter, todo: list[int]) -> list[int]:
    """Report the refused prompts' images still to do (in `todo`); returns the rest of `todo`."""
    if not plan.refused_prompts:
        return todo
    pending = set(todo)
    per_prompt = len(plan.seeds)
    refused: set[int] = set()
    for prompt_index, concept in plan.refused_prompts:
        indices = tuple(range(prompt_index * per_prompt, (prompt_index + 1) * per_prompt))
        refused.update(indices)
        left = [i for i in indices if i in pending]
        if not left:  # an earlier attempt reported them
            continue
        reporter.policy(ev.Policy(check=Check.PROMPT, concept=concept, action=Action.REFUSE,
                                  prompt_index=prompt_index, indices=indices, policy=plan.policy_name))
        for i in left:
            _, _, seed = plan.image(i)
            reporter.artifact(ev.Artifact(index=i, seed=seed, finish_reason=FinishReason.PROMPT_FILTERED,
                                          prompt_index=prompt_index, concept=concept), b"")
    return [i for i in todo if i not in refused]
