"""A dataset spec file (`atelier dataset SPEC`): prompts x styles x seeds and how to make them.

JSON, every key optional but a prompt source and seeds (docs/API.md, "Dataset jobs"):

    {"prompts": ["a red apple", {"prompt": "a blue gem", "negative_prompt": "blurry"}],
     "prompt_file": "prompts.txt",          # instead of "prompts": one prompt a line, '#' comments
     "styles": ["twemoji", "noto"],         # each prompt in each style; absent: the prompts' own
     "seeds": {"start": 0, "count": 50},    # or a list of seeds
     "shard_size": 256, "output": "studio/icons-v1",
     "model": "", "model_version": "", "steps": 0, "sampler": "", "guidance_scale": 7.5,
     "width": 0, "height": 0, "negative_prompt": "", "request_id": ""}

Every problem is a :class:`SpecError` naming the key and what it should be, so a bad spec is
one line on stderr and exit status 2, never a traceback or a request the gateway must refuse.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atelier_cli.arguments import UINT32_MAX, UINT64_MAX
from services.common.datasets import MAX_SHARD_SIZE, BadOutput, parse_output

# key -> (type, what it must be); prompts, prompt_file, styles and seeds are read apart.
_OPTIONS: dict[str, tuple[type, str]] = {
    "model": (str, "a model name"), "model_version": (str, "a version"), "sampler": (str, "a sampler name"),
    "negative_prompt": (str, "a text"), "request_id": (str, "a text of at most 128 characters"),
    "steps": (int, "a whole number from 0"), "width": (int, "a whole number from 0"),
    "height": (int, "a whole number from 0"), "guidance_scale": (float, "a number from 0"),
    "shard_size": (int, f"a whole number from 0 to {MAX_SHARD_SIZE}"),
    "output": (str, "s3://bucket/prefix or a folder"),
}
_SOURCES = ("prompts", "prompt_file", "styles", "seeds")


class SpecError(ValueError):
    """A spec file that cannot make a request; the message names the key."""


@dataclass(frozen=True)
class DatasetSpecFile:
    prompts: list[dict[str, str]]
    seeds: list[int]
    styles: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return len(self.prompts) * max(1, len(self.styles)) * len(self.seeds)

    def request_fields(self, output: str, shard_size: int | None = None) -> dict[str, Any]:
        """Keywords of clients.requests.build_request for this spec, written to ``output``."""
        opts = dict(self.options)
        size = shard_size if shard_size is not None else opts.pop("shard_size", 0)
        opts.pop("shard_size", None)
        opts.pop("output", None)
        fields = {k: v for k, v in opts.items() if k != "sampler"}
        if opts.get("sampler"):
            fields["sampler"] = opts["sampler"]
        return {**fields, "prompts": self.prompts, "seeds": self.seeds,
                "dataset": {"output": output, "shard_size": size, "styles": self.styles}}


def load(path: Path) -> DatasetSpecFile:
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read it ({err.strerror or err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}: not JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: must be a JSON object of keys ({', '.join((*_SOURCES, *_OPTIONS))})")
    try:
        return parse(data, path.parent)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None


def parse(data: dict[str, Any], base: Path) -> DatasetSpecFile:
    unknown = sorted(set(data) - set(_SOURCES) - set(_OPTIONS))
    if unknown:
        raise SpecError(f"unknown key {unknown[0]!r} (known: {', '.join((*_SOURCES, *_OPTIONS))})")
    return DatasetSpecFile(_prompts(data, base), _seeds(data.get("seeds")), _styles(data.get("styles", [])),
                           _options(data))


def _prompts(data: dict[str, Any], base: Path) -> list[dict[str, str]]:
    if ("prompts" in data) == ("prompt_file" in data):
        raise SpecError("give either 'prompts' (a list) or 'prompt_file' (a file of one prompt a line)")
    if "prompt_file" in data:
        if not isinstance(data["prompt_file"], str):
            raise SpecError("'prompt_file' must be a path (relative to the spec file)")
        file = base / data["prompt_file"]
        try:
            lines = file.read_text().splitlines()
        except OSError as err:
            raise SpecError(f"prompt_file {file}: cannot read it ({err.strerror or err})") from None
        prompts = [{"prompt": line.strip()} for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not prompts:
            raise SpecError(f"prompt_file {file} holds no prompt")
        return prompts
    items = data["prompts"]
    if not isinstance(items, list) or not items:
        raise SpecError("'prompts' must be a non-empty list of prompts")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict) or set(item) - {"prompt", "negative_prompt", "style"} or \
                not all(isinstance(v, str) for v in item.values()):
            raise SpecError(f"prompts[{i}] must be a text or an object of texts prompt, negative_prompt, style")
        if not item.get("prompt", "").strip():
            raise SpecError(f"prompts[{i}] is empty")
        out.append(item)
    return out


def _styles(styles: Any) -> list[str]:
    if not isinstance(styles, list) or not all(isinstance(s, str) and s for s in styles):
        raise SpecError("'styles' must be a list of style names")
    if len(set(styles)) != len(styles):
        raise SpecError("'styles' names a style twice")
    return styles


def _seeds(seeds: Any) -> list[int]:
    if seeds is None:
        raise SpecError("'seeds' is missing: a list of seeds or {\"start\": S, \"count\": N}")
    if isinstance(seeds, dict):
        if set(seeds) != {"start", "count"}:
            raise SpecError("'seeds' as an object has exactly 'start' and 'count'")
        start, count = seeds["start"], seeds["count"]
        if not _whole(start, 0, UINT64_MAX):
            raise SpecError(f"seeds.start must be a whole number from 0 to {UINT64_MAX}, got {start!r}")
        if not _whole(count, 1, UINT32_MAX):
            raise SpecError(f"seeds.count must be a whole number of at least 1, got {count!r}")
        if start + count - 1 > UINT64_MAX:
            raise SpecError(f"seeds.start {start} + count {count}: the last seed would pass {UINT64_MAX}")
        return list(range(start, start + count))
    if not isinstance(seeds, list) or not seeds:
        raise SpecError("'seeds' must be a non-empty list of seeds or {\"start\": S, \"count\": N}")
    for i, s in enumerate(seeds):
        if not _whole(s, 0, UINT64_MAX):
            raise SpecError(f"seeds[{i}] must be a whole number from 0 to {UINT64_MAX}, got {s!r}")
    return seeds


def _options(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (kind, what) in _OPTIONS.items():
        if key not in data:
            continue
        value = data[key]
        ok = {str: isinstance(value, str), int: _whole(value, 0, UINT32_MAX),
              float: isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
              and value >= 0}[kind]
        if key == "shard_size":
            ok = ok and value <= MAX_SHARD_SIZE
        if not ok:
            raise SpecError(f"'{key}' must be {what}, got {value!r}")
        out[key] = value
    if "output" in out:
        out["output"] = checked_output(out["output"], "'output'")
    return out


def checked_output(text: str, where: str = "--out") -> str:
    try:
        return str(parse_output(text))
    except BadOutput as err:
        raise SpecError(f"{where} {text!r}: {err}") from None


def _whole(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
