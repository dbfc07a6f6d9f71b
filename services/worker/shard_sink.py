"""A dataset job's shards as this worker writes them: the file into the dataset's store, then its
record in the job store, fenced by the attempt (services/common/store/shards.py).

The file goes first: a shard recorded is always in the store. A worker killed between the two
leaves a file no record names; the next attempt makes the shard again and writes the same bytes
over it (a shard's bytes depend only on its plan: services/common/shards.py).
"""

from __future__ import annotations

from services.common.dataset_store import DatasetFiles
from services.common.datasets import INDEX_NAME
from services.common.jobs import JobRecord
from services.common.shards import ShardInfo, index_document, shard_info
from services.common.store import JobStore
from services.worker.reporting import JobStopped


class StoreShards:
    def __init__(self, store: JobStore, job: JobRecord, attempt: int, files: DatasetFiles):
        self.store, self.job, self.attempt, self.files = store, job, attempt, files
        self.images = 0  # in the shards this attempt wrote

    def written(self) -> dict[int, ShardInfo]:
        return self.store.shards(self.job.job_id)

    def write(self, shard: int, data: bytes, images: int) -> ShardInfo:
        info = shard_info(shard, data, images, self.attempt)
        self.files.put(info.file, data)
        if not self.store.add_shard(self.job.job_id, self.attempt, info):
            raise JobStopped(self.job.job_id)  # a later attempt owns the job, or it ended
        self.images += images
        return info

    def finish(self, shards: list[ShardInfo]) -> None:
        plan = self.job.spec.plan
        # Every sample's JSON carries its prompt and seed: the index keeps what they share.
        shared = {k: v for k, v in plan.to_dict().items() if k not in ("prompts", "seeds")}
        self.files.put(INDEX_NAME, index_document(self.job.job_id, shared, shards, plan.images_total))
