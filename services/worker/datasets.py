"""A dataset job's shards: its images made shard by shard and written to its store.

A DATASET job samples like text-to-image (services/worker/kinds.py) and runs the same stages,
but its last stage is :func:`archive` (``Stage.ARCHIVE``), which puts each image with its
caption and metadata into the shard being filled instead of reporting it as an artifact.
:func:`run_shards` runs the shards the job still lacks, one after another: a shard's chunks,
then its tar file written to the store and recorded (:class:`ShardSink`), then the next. So
a worker lost mid-job loses at most the shard it was filling, and the next attempt starts at
the first shard not recorded (docs/ARCHITECTURE.md, "Dataset jobs"). The job's time limits
hold per shard: a job of any size runs as long as each shard fits in them.

A shard's chunks run ``chunks_in_flight`` at a time (ATELIER_DATASET_CHUNKS_IN_FLIGHT), as
many one-chunk jobs would: while one chunk decodes and encodes, the others sample, and the
batching denoiser stacks their rows into its calls. The samples are put in key order when the
shard is written, so a shard's bytes do not depend on which chunk finished first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from services.common import events as ev
from services.common.datasets import sample_key
from services.common.jobs import FinishReason
from services.common.shards import CAPTION, IMAGE, METADATA, Sample, ShardInfo, metadata_json, tar_shard
from services.worker.stages import Chunk, JobContext, JobReporter, TextCache, provenance_of


class ShardSink(Protocol):
    """Where a dataset job's shards go: its store, and the job store that records them."""

    def written(self) -> dict[int, ShardInfo]:
        """Shards recorded by this job's attempts so far."""

    def write(self, shard: int, data: bytes, images: int) -> ShardInfo:
        """Store the shard's file and record it; raises when the attempt no longer owns the job."""

    def finish(self, shards: list[ShardInfo]) -> None:
        """Write the dataset's index once every shard is written."""


class ShardProgress:
    """The job's reporter, with a dataset job's counts: images and shards written (by every
    attempt), and each shard's time limits begun anew."""

    def __init__(self, reporter: JobReporter, written: dict[int, ShardInfo], shards_total: int):
        self.reporter = reporter
        self.images_written = sum(s.images for s in written.values())
        self.shards_written, self.shards_total = len(written), shards_total
        self._steps = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        self.reporter.check()

    def progress(self, steps_done: int, steps_total: int, images_done: int) -> None:
        # Chunks in flight each count from the images made when they began: the furthest count is
        # told, so steps never go back. Images count once their shard is stored, as the record does.
        with self._lock:
            self._steps = max(self._steps, steps_done)
            self.reporter.progress(self._steps, steps_total, self.images_written,
                                   shards=(self.shards_written, self.shards_total))

    def preview(self, index: int, step: int, jpeg: bytes, width: int, height: int) -> None:
        self.reporter.preview(index, step, jpeg, width, height)

    def artifact(self, payload: ev.Artifact, blob: bytes) -> None:
        # Only an image the content policy's output check withheld is reported as it is for any job
        # (FILTERED, no data): it is in no shard. The images themselves go into shards.
        if payload.finish_reason != FinishReason.FILTERED:
            raise AssertionError("a dataset job's images go into shards, not artifacts")
        self.reporter.artifact(payload, blob)

    def policy(self, payload: ev.Policy) -> None:
        self.reporter.policy(payload)

    def shard_begins(self) -> None:
        begin = getattr(self.reporter, "shard_begins", None)
        if begin is not None:
            begin()

    def shard_written(self, info: ShardInfo) -> None:
        with self._lock:
            self.images_written += info.images
            self.shards_written += 1


class ShardSamples:
    """The samples of the shard being filled, from every chunk in flight."""

    def __init__(self):
        self.samples: list[Sample] = []
        self._lock = threading.Lock()

    def add(self, job: JobContext, samples: list[Sample]) -> None:
        with self._lock:
            self.samples += samples
            job.made += len(samples)

    def tar(self) -> bytes:
        return tar_shard(sorted(self.samples, key=lambda s: s.key))


def sample_metadata(chunk: Chunk, row: int) -> dict[str, Any]:
    index = chunk.indices[row]
    prompt_index, prompt, seed = chunk.job.plan.image(index)
    rgba = chunk.rgba[row]
    return {"key": sample_key(index), "index": index, "prompt_index": prompt_index, "prompt": prompt.prompt,
            "negative_prompt": prompt.negative_prompt, "style": prompt.style, "seed": seed,
            "width": int(rgba.shape[1]), "height": int(rgba.shape[0]), "provenance": provenance_of(chunk, row)}


def archive(chunk: Chunk) -> None:
    """The dataset job's last stage: each encoded image, its caption and metadata into the shard."""
    job = chunk.job
    samples = []
    for row, index in enumerate(chunk.indices):
        blob, _ = chunk.encoded[row]
        _, prompt, _ = job.plan.image(index)
        members = {IMAGE: blob, CAPTION: prompt.prompt.encode(), METADATA: metadata_json(sample_metadata(chunk, row))}
        samples.append(Sample(sample_key(index), members))
    job.shard.add(job, samples)
    job.reporter.progress(job.made * job.plan.steps_per_image, job.steps_total, job.made)


def shards_to_make(plan, written: dict[int, ShardInfo]) -> list[int]:
    return [s for s in range(plan.dataset.shards_total) if s not in written]


def run_shards(ctx: JobContext, sink: ShardSink, written: dict[int, ShardInfo], rows: int,
               run_chunk: Callable[[Chunk], None], chunks_in_flight: int = 1) -> int:
    """Make and write every shard not in ``written``, then the index; returns the images made."""
    dataset = ctx.plan.dataset
    progress = ShardProgress(ctx.reporter, written, dataset.shards_total)
    ctx.reporter = progress
    progress.check()
    progress.progress(0, ctx.steps_total, 0)
    shards = dict(written)
    with ThreadPoolExecutor(max(1, chunks_in_flight), thread_name_prefix="atelier-dataset") as pool:
        for shard in shards_to_make(ctx.plan, written):
            progress.shard_begins()
            ctx.texts = TextCache(ctx.runtime)  # a shard's prompts only: a prompt file's thousands are never all held
            ctx.shard = ShardSamples()
            indices = list(dataset.shard_indices(shard))
            chunks = [pool.submit(run_chunk, Chunk(ctx, indices[i:i + rows])) for i in range(0, len(indices), rows)]
            try:
                for done in chunks:
                    done.result()
            finally:  # a chunk that failed ends the shard: chunks not begun are dropped
                for c in chunks:
                    c.cancel()
            progress.check()
            shards[shard] = sink.write(shard, ctx.shard.tar(), len(ctx.shard.samples))
            progress.shard_written(shards[shard])
            progress.progress(ctx.made * ctx.plan.steps_per_image, ctx.steps_total, ctx.made)
    sink.finish([shards[s] for s in sorted(shards)])
    return ctx.made
