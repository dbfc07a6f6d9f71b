"""The concept vocabulary of content policies: the one place concept names, what each covers,
which the service blocks by default, and the actions and checks are named.

A policy maps a concept to an action (docs/API.md, "Content policy"): REFUSE stops a prompt
that names it at the gateway and drops an image that shows it; DROP lets the prompt through and
drops only the images the output check flags. The default policy blocks what no studio asks for
(sexual content, hate symbols and extremist insignia, graphic violence and gore, self-harm,
terrorism, hard-drug use); weapons, alcohol, tobacco, gambling and the rest are what a tenant
opts into blocking (a children's game), since studios draw swords and beer mugs every day.
"""

from __future__ import annotations

from dataclasses import dataclass


class Action:
    """`atelier.v1.PolicyAction` names without the prefix."""

    REFUSE = "REFUSE"
    DROP = "DROP"

    ALL = (REFUSE, DROP)


class Check:
    """`atelier.v1.PolicyCheck` names without the prefix: which check applied the policy."""

    PROMPT = "PROMPT"  # the gateway's prompt check
    OUTPUT = "OUTPUT"  # the worker's output classifier


@dataclass(frozen=True)
class Concept:
    name: str
    description: str


CONCEPTS: tuple[Concept, ...] = (
    Concept("weapons", "guns, knives, swords, bombs and other arms"),
    Concept("alcohol", "alcoholic drinks and drinking"),
    Concept("tobacco", "cigarettes, cigars, pipes, vaping and smoking"),
    Concept("gambling", "casinos, betting, slot machines and games of chance for money"),
    Concept("drugs", "recreational drugs, pills and paraphernalia"),
    Concept("violence_gore", "graphic violence, mutilation, gore and torture"),
    Concept("hate_symbols", "hate symbols, extremist insignia and slurs"),
    Concept("sexual_content", "nudity, sexual acts and sexualised depictions"),
    Concept("self_harm", "suicide, self-injury and eating-disorder promotion"),
    Concept("terrorism", "terrorist attacks, terrorist groups and their propaganda"),
    Concept("hard_drug_use", "injecting, smoking or snorting hard drugs (heroin, cocaine, meth)"),
    Concept("real_persons", "the likeness of real, named people"),
    Concept("trademarks", "brand logos, trademarked characters and products"),
)
BY_NAME: dict[str, Concept] = {c.name: c for c in CONCEPTS}
NAMES: tuple[str, ...] = tuple(sorted(BY_NAME))

# What the service blocks when a tenant has no policy of its own (Settings.content_policy_default).
DEFAULT_BLOCKED: tuple[str, ...] = (
    "sexual_content", "hate_symbols", "violence_gore", "self_harm", "terrorism", "hard_drug_use",
)
# What a children's or family title typically adds (docs/API.md, "Content policy": an example).
FAMILY_EXTRA: tuple[str, ...] = ("weapons", "alcohol", "tobacco", "gambling", "drugs")


def check_name(name: str) -> str:
    """The concept name, or ValueError naming the vocabulary."""
    if name not in BY_NAME:
        raise ValueError(f"unknown concept {name!r}: the vocabulary is {', '.join(NAMES)}")
    return name
