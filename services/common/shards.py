"""The WebDataset layout of a dataset: tar shards of samples, and the index that lists them.

A sample is the tar members that share a key (``00000042.png``, ``00000042.txt``,
``00000042.json``), stored next to each other in key order, which is what WebDataset readers
group on. A shard's bytes depend only on its samples (member times, owners and modes are fixed),
so a shard written again by another attempt is the same file. ``index.json`` names the layout,
the job and plan it came from, and each shard's file, images, size and sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from services.common.datasets import INDEX_NAME, LAYOUT, shard_name, shard_pattern

# Member extensions of a sample, in the order they are written.
IMAGE, CAPTION, METADATA = "png", "txt", "json"


@dataclass(frozen=True)
class Sample:
    key: str
    members: dict[str, bytes]  # extension -> bytes


@dataclass(frozen=True)
class ShardInfo:
    """One written shard, as recorded in the job store and listed in the index."""

    shard: int
    file: str
    images: int
    bytes: int
    sha256: str
    attempt: int = 0  # the job's attempt that wrote it

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ShardInfo:
        return cls(**json.loads(text))


def metadata_json(metadata: dict[str, Any]) -> bytes:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()


def tar_shard(samples: list[Sample]) -> bytes:
    """A shard's tar bytes: each sample's members under ``<key>.<ext>``, samples in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            for ext, data in sample.members.items():
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def shard_info(shard: int, data: bytes, images: int, attempt: int = 0) -> ShardInfo:
    return ShardInfo(shard, shard_name(shard), images, len(data), hashlib.sha256(data).hexdigest(), attempt)


def read_shard(data: bytes) -> Iterator[Sample]:
    """The samples of a shard's bytes, grouped by key as WebDataset groups them."""
    current: Sample | None = None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if current is None or current.key != key:
                if current is not None:
                    yield current
                current = Sample(key, {})
            current.members[ext] = tar.extractfile(member).read()
    if current is not None:
        yield current


def index_document(job_id: str, plan: dict[str, Any], shards: list[ShardInfo], images_total: int) -> bytes:
    """``index.json``: the layout, the plan the images were made with, and every shard in order;
    ``images`` counts the images in the shards, ``filtered`` those of the ``images_total`` that the
    content policy's output check withheld."""
    shards = sorted(shards, key=lambda s: s.shard)
    written = sum(s.images for s in shards)
    document = {
        "layout": LAYOUT,
        "members": [IMAGE, CAPTION, METADATA],
        "job_id": job_id,
        "images": written,
        "filtered": images_total - written,
        "urls": shard_pattern(len(shards)),
        "shards": [{k: v for k, v in asdict(s).items() if k != "attempt"} for s in shards],
        "plan": plan,
    }
    return json.dumps(document, indent=1, sort_keys=True).encode()


__all__ = ["CAPTION", "IMAGE", "INDEX_NAME", "METADATA", "Sample", "ShardInfo", "index_document", "read_shard",
           "shard_info", "tar_shard"]
