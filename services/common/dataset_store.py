"""Where dataset files are written and read: a folder (a volume in compose and Kubernetes) or any
S3-compatible object store (through ``boto3``, imported only when used).

A write is all or nothing in both: a file is written beside its name and renamed over it
(after an fsync), an object is one PUT. So a worker killed while writing a shard leaves no
partial shard under the shard's name, only a ``.part`` file the next write of it replaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.common.datasets import Location, parse_output


class DatasetFiles(Protocol):
    """One dataset's folder or key prefix."""

    def put(self, name: str, data: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def names(self) -> list[str]: ...

    def __str__(self) -> str: ...


class FolderFiles:
    def __init__(self, folder: Path):
        self.folder = folder

    def put(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / name
        part = target.with_name(f"{name}.{os.getpid()}.part")
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, target)

    def get(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_file() and not p.name.endswith(".part"))

    def __str__(self) -> str:
        return str(self.folder)


class BucketFiles:
    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)

    def get(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()

    def names(self) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            out += [item["Key"][len(self.prefix) + 1:] for item in page.get("Contents", [])]
        return sorted(n for n in out if "/" not in n)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class DatasetStores:
    """The stores a worker (or the command line) writes and reads datasets in: its dataset
    directory for folders, and an S3-compatible endpoint ("" : the AWS default) for ``s3://``;
    credentials come from boto3's usual sources (``AWS_ACCESS_KEY_ID``, ... or a profile)."""

    directory: Path
    s3_endpoint: str = ""
    s3_region: str = ""

    def open(self, location: Location | str) -> DatasetFiles:
        if isinstance(location, str):
            location = parse_output(location)
        if location.is_s3:
            return BucketFiles(s3_client(self.s3_endpoint, self.s3_region), location.bucket, location.path)
        return FolderFiles(self.directory.expanduser() / location.path)


def s3_client(endpoint: str = "", region: str = ""):
    try:
        import boto3
    except ModuleNotFoundError:
        raise RuntimeError("s3:// datasets need boto3: pip install 'atelier[datasets]'") from None
    return boto3.client("s3", endpoint_url=endpoint or None, region_name=region or None)
