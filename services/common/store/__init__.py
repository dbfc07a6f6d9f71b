"""Job records, their event logs and their images in Redis: :class:`JobStore`, assembled from
one module per concern (keys, admission, outbox, reading, history, attempts, finishing), each with the Lua
scripts it runs.

Every change of state is one Lua script, i.e. one atomic compare-and-set: a job leaves
QUEUED/RUNNING exactly once, a redelivered task cannot finish a job twice, and nothing
is appended to a job's log after its `finished` event. A worker's writes carry the
attempt number it got from :meth:`JobStore.begin_attempt`; once a job is final, or taken
over by a later attempt, they are refused (the method returns None/False) and the worker
stops.

Keys (all under `Settings.key_prefix`):

    job:<id>                     hash    the record (spec JSON, state, counters, uploaded images)
    job:<id>:events              stream  the event log (see services.common.events)
    job:<id>:artifacts           hash    image index -> encoded image bytes
    job:<id>:shards              hash    a dataset job's shard number -> its written shard (store/shards.py)
    tenant:<t>:inflight          set     ids of the tenant's queued and running jobs
    tenant:<t>:rate:<minute>     string  jobs the tenant submitted in that minute (admission)
    queue:<q>:waiting            set     keys (job:<id>) of the jobs admitted to queue <q> that no
                                         attempt has begun yet: what the queue cap counts
    tenant:<t>:request:<rid>     string  idempotency key -> job id
    tenant:<t>:jobs              zset    the tenant's job ids scored by creation time in ms: its
                                         history, newest first (ListJobs; store/history.py)
    outbox                       zset    ids of jobs stored but not yet handed to the broker,
                                         scored by creation time (see :meth:`JobStore.unsent`)
    leases                       zset    ids of jobs a worker holds, scored by when the hold
                                         lapses (services/worker/leases.py)
    tenant:<t>:image:<sha256>    hash    a delivered image's fingerprint, job and provenance, kept
                                         for the retention period (LookupImage; store/image_records.py)
    tenant:<t>:phash:<b>:<v>     zset    the tenant's images by one byte of their perceptual hash

A finished job's keys expire after `result_ttl_seconds`.
"""

from __future__ import annotations

import redis

from services.common.store import admission, attempts, finishing, outbox, shards
from services.common.store.admission import Admitted, Admitting, DuplicateJob, Quota, QuotaExceeded, new_job_id
from services.common.store.attempts import Attempts
from services.common.store.finishing import Finishing
from services.common.store.history import History, HistoryFilter, HistoryPage, Position
from services.common.store.image_records import ImageMatch, ImageRecords
from services.common.store.keys import KeyNames
from services.common.store.outbox import Outbox
from services.common.store.reading import JobNotFound, Reading
from services.common.store.shards import Shards

__all__ = ["Admitted", "DuplicateJob", "HistoryFilter", "HistoryPage", "ImageMatch", "JobNotFound", "JobStore",
           "Position", "Quota", "QuotaExceeded", "new_job_id"]

# attribute -> the Lua script it runs, registered once per store
_SCRIPTS = {
    "_create": admission._CREATE,
    "_claim_unsent": outbox._CLAIM_UNSENT,
    "_begin": attempts._BEGIN,
    "_append": attempts._APPEND,
    "_artifact": attempts._ARTIFACT,
    "_finish": finishing._FINISH,
    "_shard": shards._SHARD,
}


class JobStore(KeyNames, Admitting, Outbox, Reading, History, Attempts, Finishing, Shards, ImageRecords):
    """All reads and writes of job records and events. Thread-safe (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, key_prefix: str = "atelier:", result_ttl_seconds: int = 24 * 3600):
        self.client = client
        self.prefix = key_prefix
        self.result_ttl_seconds = int(result_ttl_seconds)
        for attribute, script in _SCRIPTS.items():
            setattr(self, attribute, client.register_script(script))
