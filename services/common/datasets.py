"""Dataset jobs: where a dataset goes, how its images split into shards, and what its plan holds.

A dataset job (docs/API.md, "Dataset jobs") makes prompts x styles x seeds images and writes
them as WebDataset shards: tar files whose members are grouped by a sample key
(``<key>.png``, ``<key>.txt``, ``<key>.json``), plus ``index.json`` listing the shards. A shard
is the unit of work and of recovery (docs/ARCHITECTURE.md, "Dataset jobs"): shard ``s`` holds
images ``s * shard_size`` to ``(s + 1) * shard_size - 1`` in the plan's image order, so every
attempt of a job cuts the same shards. Plain Python: the gateway, the worker and the command
line share it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from services.common.prompts import PromptSpec

INDEX_NAME = "index.json"
LAYOUT = "webdataset"
DEFAULT_SHARD_SIZE = 256
MAX_SHARD_SIZE = 10_000
MAX_OUTPUT_CHARS = 1024
S3_SCHEME = "s3://"


class BadOutput(ValueError):
    """A dataset's output location that no store takes."""


@dataclass(frozen=True)
class Location:
    """Where a dataset is written: a bucket and key prefix of the S3-compatible store, or a
    folder under the worker's dataset directory (``bucket`` empty)."""

    bucket: str
    path: str  # the key prefix in the bucket, or the folder relative to the dataset directory

    @property
    def is_s3(self) -> bool:
        return bool(self.bucket)

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.path}" if self.is_s3 else self.path


def parse_output(text: str) -> Location:
    """The location ``text`` names: ``s3://bucket/prefix`` or a relative folder (``studio/run1``).

    A folder is always inside the worker's dataset directory: an absolute path or a ``..`` that
    leaves it would let a request write anywhere the worker can."""
    if not text:
        raise BadOutput("must name where the dataset goes: s3://bucket/prefix or a folder under the dataset directory")
    if len(text) > MAX_OUTPUT_CHARS:
        raise BadOutput(f"{len(text)} characters is over the limit of {MAX_OUTPUT_CHARS}")
    if any(ord(c) < 32 for c in text) or "\\" in text:
        raise BadOutput("must not contain control characters or backslashes")
    if text.startswith(S3_SCHEME):
        bucket, _, prefix = text[len(S3_SCHEME):].partition("/")
        if not _bucket_name(bucket):
            raise BadOutput(f"{bucket!r} is not a bucket name (3-63 lower-case letters, digits, dots and hyphens)")
        prefix = prefix.strip("/")
        if not prefix:
            raise BadOutput(f"{text!r} names no key prefix: s3://{bucket}/PREFIX keeps each dataset apart")
        return Location(bucket, _relative(prefix, text))
    if "://" in text:
        raise BadOutput(f"{text.split('://')[0]!r} is not a store this service writes to: s3://... or a folder")
    if text.startswith(("/", "~")):
        raise BadOutput(f"{text!r} is not relative: a folder is named relative to the workers' dataset directory")
    return Location("", _relative(text.strip("/"), text))


def _relative(path: str, text: str) -> str:
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadOutput(f"{text!r} has an empty, '.' or '..' part")
    return posixpath.join(*parts)


def _bucket_name(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    return 3 <= len(name) <= 63 and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()


@dataclass(frozen=True)
class DatasetRequest:
    """A request's dataset part, as asked: where it goes, images per shard (0: the default), and
    the styles each prompt is crossed with (empty: each prompt's own)."""

    output: str
    shard_size: int = 0
    styles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "styles", tuple(self.styles))


@dataclass(frozen=True)
class DatasetPlan:
    """A dataset job's part of its plan: the location and the shard size it runs with."""

    output: str
    shard_size: int
    images_total: int

    @property
    def shards_total(self) -> int:
        return shard_count(self.images_total, self.shard_size)

    def shard_indices(self, shard: int) -> range:
        """The plan's image indices in shard ``shard``."""
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.images_total))


def dataset_plan(request: DatasetRequest, images_total: int) -> DatasetPlan:
    return DatasetPlan(str(parse_output(request.output)), request.shard_size or DEFAULT_SHARD_SIZE, images_total)


def shard_count(images: int, shard_size: int) -> int:
    return -(-images // shard_size)


def shard_name(shard: int) -> str:
    """``shard-000042.tar``: names that sort in shard order and fit WebDataset's brace patterns."""
    return f"shard-{shard:06d}.tar"


def shard_pattern(shards: int) -> str:
    """All shards in one WebDataset URL pattern, e.g. ``shard-{000000..000039}.tar``."""
    return shard_name(0) if shards == 1 else f"shard-{{{0:06d}..{shards - 1:06d}}}.tar"


def sample_key(index: int) -> str:
    """The WebDataset key of image ``index``: its members share it (``00000042.png``, ...)."""
    return f"{index:08d}"


def crossed(prompts: tuple[PromptSpec, ...], styles: tuple[str, ...]) -> tuple[PromptSpec, ...]:
    """Each prompt once per style (prompt-major), or the prompts as they are when no styles are given."""
    if not styles:
        return prompts
    return tuple(PromptSpec(p.prompt, p.negative_prompt, style) for p in prompts for style in styles)
