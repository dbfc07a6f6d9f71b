"""A dataset job's finished shards: recorded once each, fenced by the attempt that wrote them.

``job:<id>:shards`` maps a shard number to its :class:`services.common.shards.ShardInfo`. A
shard is recorded only after its file is in the dataset's store, by the attempt that still owns
the job, and once (HSETNX): the record's ``images_done`` and ``shards_done`` grow by it in the
same step. A later attempt reads the hash and skips those shards, so a finished shard is never
made again and a worker's death costs at most the shard it was writing.
"""

from __future__ import annotations

from services.common.shards import ShardInfo

# KEYS: 1 job, 2 shards. ARGV: 1 attempt, 2 shard number, 3 its ShardInfo JSON, 4 its images, 5 TTL.
_SHARD = """
if redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then return false end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return false end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return false end
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('HINCRBY', KEYS[1], 'shards_done', 1)
return redis.call('HINCRBY', KEYS[1], 'images_done', tonumber(ARGV[4]))
"""


class Shards:
    """A mixin of JobStore."""

    def add_shard(self, job_id: str, attempt: int, info: ShardInfo) -> bool:
        """Record a written shard; False if the attempt no longer owns the job or the shard was recorded."""
        reply = self._shard(keys=[self.job_key(job_id), self.shards_key(job_id)],
                            args=[attempt, info.shard, info.to_json(), info.images, self.result_ttl_seconds])
        return reply is not None

    def shards(self, job_id: str) -> dict[int, ShardInfo]:
        """The job's recorded shards by number."""
        return {int(k): ShardInfo.from_json(v) for k, v in self.client.hgetall(self.shards_key(job_id)).items()}
