"""The fenced code blocks of README.md and docs/*.md, and what the docs tests do with each.

A block's language says what it is (docs/TESTING.md, "Docs that run"):

- `sh` (`bash`, `shell`), `python`, `js`: examples, RUN against the shipped model;
- `text` (`proto`, `json`, `yaml`, `toml`, `ini`): output, diagrams, formats; not commands.

A runnable block that cannot run here (it trains for hours, needs Docker, Kubernetes or a tool
this machine lacks, or is a usage summary with `[--optional]` parts) has the marker

    <!-- not run: WHY -->

on the line right above its fence; each of its commands is then CHECKED instead (tests/docs/checks.py).
A block without a language is refused: a reader cannot tell a command from an output.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python", "py": "python", "js": "js",
            "javascript": "js"}
PROSE = {"text", "proto", "json", "yaml", "toml", "ini", "diff"}
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<why>.*?)\s*-->\s*$")
# `a|b` between words, `[--optional ...]`, `...`: a usage summary, not a command to type as is.
SYNOPSIS = re.compile(r"\[|\]|\.\.\.|(?<=\w)\|(?=\w)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str  # as written after the fence ("" when none)
    text: str
    not_run: str | None  # the marker's reason

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str | None:
        """"sh", "python", "js", "text", or None for a block that says nothing of what it is."""
        if self.language in RUNNABLE:
            return RUNNABLE[self.language]
        return "text" if self.language in PROSE else None

    @property
    def runs(self) -> bool:
        return self.kind in {"sh", "python", "js"} and self.not_run is None


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^\s*(`{3,})\s*([\w+-]*)", lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence.group(1)), len(lines))
        above = NOT_RUN.match(lines[i - 1]) if i else None
        found.append(Block(path, i + 1, fence.group(2).lower(), "\n".join(lines[i + 1:end]) + "\n",
                           above.group("why") if above else None))
        i = end + 1
    return found


def every_block() -> list[Block]:
    return [b for doc in documents() for b in blocks_of(doc)]


def commands(block_text: str) -> list[str]:
    """A shell block's commands: `\\`-continued lines joined, blank and comment-only lines left out."""
    out, pending = [], ""
    for raw in block_text.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


def words(command: str) -> list[str]:
    """The command's words as the shell splits them, its trailing comment left out."""
    return shlex.split(command, comments=True)


def is_synopsis(command: str) -> bool:
    return bool(SYNOPSIS.search(" ".join(words(command))))
