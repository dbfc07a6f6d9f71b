"""One prompt of a job, as asked and as planned (a plain job has one, a bulk job many)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSpec:
    prompt: str
    negative_prompt: str = ""
    style: str = ""
