"""Content policies: the concepts a tenant blocks and the action for each.

The service's default comes from `ATELIER_CONTENT_POLICY` (Settings.content_policy); a tenant's
own policy lives beside its API keys, in the keys file's `policies` section
(docs/API.md, "Content policy"; docs/DEPLOY.md):

    {"keys": [...],
     "policies": {"kids-studio": {"block": {"weapons": "REFUSE", "alcohol": "REFUSE"},
                                  "allow": [], "name": "family"}}}

`block` adds concepts (or changes their action) on top of the default, `allow` removes default
ones; a tenant without an entry gets the default. The policy in force is stored in the job's
plan, so the worker's output check applies the policy the job was admitted under.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common.policy.concepts import DEFAULT_BLOCKED, Action, check_name

DEFAULT_NAME = "default"


class PolicyError(ValueError):
    """A policy's text or document names an unknown concept or action."""


@dataclass(frozen=True)
class ContentPolicy:
    name: str
    rules: tuple[tuple[str, str], ...]  # (concept, action), sorted by concept

    @classmethod
    def of(cls, name: str, rules: Mapping[str, str]) -> ContentPolicy:
        checked: dict[str, str] = {}
        for concept, action in rules.items():
            try:
                check_name(concept)
            except ValueError as exc:
                raise PolicyError(f"policy {name!r}: {exc}") from None
            action = str(action).upper()
            if action not in Action.ALL:
                raise PolicyError(f"policy {name!r}: action {action!r} for {concept!r} is not one of "
                                  f"{', '.join(Action.ALL)}")
            checked[concept] = action
        return cls(name, tuple(sorted(checked.items())))

    @property
    def actions(self) -> dict[str, str]:
        return dict(self.rules)

    def action(self, concept: str) -> str | None:
        """The action for `concept`; None: the policy allows it."""
        return self.actions.get(concept)

    def refused(self) -> frozenset[str]:
        """Concepts whose prompts the gateway refuses."""
        return frozenset(c for c, a in self.rules if a == Action.REFUSE)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rules": self.actions}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContentPolicy:
        return cls.of(str(data["name"]), data["rules"])


def parse_rules(text: str) -> dict[str, str]:
    """`concept[=ACTION],...` (ACTION REFUSE by default) as {concept: action}."""
    rules: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(",")):
        if entry:
            concept, _, action = entry.partition("=")
            rules[concept.strip()] = (action.strip() or Action.REFUSE).upper()
    return rules


DEFAULT_RULES_TEXT = ",".join(DEFAULT_BLOCKED)


def default_policy(text: str = DEFAULT_RULES_TEXT) -> ContentPolicy:
    return ContentPolicy.of(DEFAULT_NAME, parse_rules(text))


def tenant_policy(default: ContentPolicy, tenant: str, document: Mapping[str, Any] | None) -> ContentPolicy:
    """The policy in force for `tenant`: the default changed by its keys-file entry, if any."""
    if document is None:
        return default
    if not isinstance(document, Mapping):
        raise PolicyError(f"policy of tenant {tenant!r} is not an object")
    unknown = sorted(set(document) - {"name", "block", "allow"})
    if unknown:
        raise PolicyError(f"policy of tenant {tenant!r} has unknown keys: {', '.join(unknown)}")
    rules = default.actions
    for concept in document.get("allow", ()):
        rules.pop(concept, None)
        try:
            check_name(concept)
        except ValueError as exc:
            raise PolicyError(f"policy of tenant {tenant!r}: {exc}") from None
    block = document.get("block", {})
    if not isinstance(block, Mapping):
        raise PolicyError(f"policy of tenant {tenant!r}: 'block' must map concepts to actions")
    rules.update(block)
    return ContentPolicy.of(str(document.get("name") or tenant), rules)
