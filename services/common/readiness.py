"""Which workers are up, and which model versions they have loaded and warmed up.

Each worker writes a heartbeat record every few seconds; the record expires after `ttl`
seconds, so a worker that dies (or is SIGKILLed) drops out on its own. The gateway reads
the records to answer health checks (SERVING only when some worker has a model ready),
to fill `ModelInfo.ready`, and to estimate queue ETAs from the per-row times the workers
measured per model and size (services.common.cost).

Keys: `<prefix>worker:<worker id>` -> JSON of :class:`WorkerStatus`, with a TTL, and the
set `<prefix>workers` of worker ids, so that readers find the records without scanning the
keyspace (which holds every job's keys for a day: a SCAN per Submit grew with it).

A worker calls ``Heartbeat(client, prefix, status).start()`` after its warm-up run (or
``report(...)`` itself on a timer) and ``withdraw(...)`` on a clean shutdown.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace

import redis

from services.common import cost

DEFAULT_TTL_SECONDS = 15.0
DEFAULT_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class WorkerStatus:
    worker: str  # host name and pid, as in the `started` event
    models: tuple[str, ...] = ()  # "<name>/<version>" of every model loaded and warmed up
    concurrency: int = 1  # jobs it samples at once
    busy: int = 0  # jobs it is sampling now
    # "<name>/<version>" -> "<width>x<height>" -> {"row": seconds of one row-evaluation,
    # "fixed": seconds of a job outside sampling}, measured (services.common.cost): what the
    # gateway's queue ETAs are computed from
    timings: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    execution_provider: str = ""
    load_error: str = ""  # why the default model could not be loaded, for operators and `atelier up`
    time: float = field(default=0.0)  # when it was written (Unix seconds)

    def has(self, name: str, version: str) -> bool:
        return f"{name}/{version}" in self.models


def worker_key(prefix: str, worker: str) -> str:
    return f"{prefix}worker:{worker}"


def index_key(prefix: str) -> str:
    return f"{prefix}workers"


# KEYS[1] the index, KEYS[2..] records found missing; ARGV their worker ids. Drops an id only
# if its record is still missing: a worker that reported again meanwhile keeps its entry.
_PRUNE = """
for i, worker in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then redis.call('SREM', KEYS[1], worker) end
end
return 0
"""


def report(client: redis.Redis, prefix: str, status: WorkerStatus, ttl: float = DEFAULT_TTL_SECONDS) -> None:
    """Write (or refresh) one worker's record."""
    status = replace(status, time=time.time(), models=tuple(status.models))
    pipe = client.pipeline(transaction=True)  # MULTI: the record and its index entry appear together
    pipe.set(worker_key(prefix, status.worker), json.dumps(asdict(status)), px=int(ttl * 1000))
    pipe.sadd(index_key(prefix), status.worker)
    pipe.execute()


def withdraw(client: redis.Redis, prefix: str, worker: str) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(worker_key(prefix, worker))
    pipe.srem(index_key(prefix), worker)
    pipe.execute()


def _record_keys(client: redis.Redis, prefix: str) -> tuple[list[str], list[str]]:
    """(worker ids, their record keys) from the index; by SCAN only when the index is empty
    (workers of a release before the index write none)."""
    ids = sorted(m.decode() if isinstance(m, bytes) else m for m in client.smembers(index_key(prefix)))
    if ids:
        return ids, [worker_key(prefix, w) for w in ids]
    keys = sorted(k.decode() if isinstance(k, bytes) else k
                  for k in client.scan_iter(match=f"{prefix}worker:*", count=500))
    return [], keys


def workers(client: redis.Redis, prefix: str) -> list[WorkerStatus]:
    """Every worker whose heartbeat has not expired."""
    ids, keys = _record_keys(client, prefix)
    if not keys:
        return []
    found = []
    missing: list[tuple[str, str]] = []
    for i, raw in enumerate(client.mget(keys)):
        if raw is None:
            if ids:
                missing.append((keys[i], ids[i]))
            continue
        try:
            data = json.loads(raw)
            data["models"] = tuple(data.get("models", ()))
            found.append(WorkerStatus(**{k: v for k, v in data.items() if k in WorkerStatus.__dataclass_fields__}))
        except (ValueError, TypeError):
            continue
    if missing:  # expired: the worker died without withdrawing
        client.register_script(_PRUNE)(keys=[index_key(prefix), *(k for k, _ in missing)],
                                       args=[w for _, w in missing])
    return found


def timings(statuses: list[WorkerStatus]) -> dict[str, dict[str, dict[str, float]]]:
    """The live workers' measured timings as one (services.common.cost)."""
    return cost.merge(w.timings for w in statuses)


def ready_models(client: redis.Redis, prefix: str) -> set[str]:
    """"<name>/<version>" of every model some live worker has ready."""
    return {m for w in workers(client, prefix) for m in w.models}


class Snapshot:
    """`workers()` read at most once per `max_age` seconds, for callers on a hot path.

    The gateway consults readiness several times per Submit (model resolution in validation
    and in submit, the ETA in admission); workers report only every few seconds, so a
    snapshot up to a second old answers as well and saves those round trips.
    """

    def __init__(self, client: redis.Redis, prefix: str, max_age: float = 1.0, clock=time.monotonic):
        self.client, self.prefix, self.max_age, self.clock = client, prefix, max_age, clock
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._workers: list[WorkerStatus] = []

    def workers(self) -> list[WorkerStatus]:
        """Live workers; none while Redis does not answer (no worker can be known ready then, and
        ListModels still lists the repository, every version not ready)."""
        with self._lock:
            now = self.clock()
            if now - self._read_at >= self.max_age:
                try:
                    self._workers = workers(self.client, self.prefix)
                except (redis.ConnectionError, redis.TimeoutError):
                    self._workers = []
                self._read_at = now
            return list(self._workers)

    def ready_models(self) -> set[str]:
        return {m for w in self.workers() for m in w.models}


class Heartbeat:
    """Reports a worker's status every `interval` seconds from a daemon thread."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        status: WorkerStatus,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        ttl: float = DEFAULT_TTL_SECONDS,
    ):
        self.client, self.prefix, self.interval, self.ttl = client, prefix, interval, ttl
        self._status = status
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, **changes) -> None:
        """Change fields of the record (e.g. models, timings); sent with the next beat."""
        with self._lock:
            self._status = replace(self._status, **changes)

    def beat(self) -> None:
        with self._lock:
            status = self._status
        try:
            report(self.client, self.prefix, status, self.ttl)
        except redis.RedisError:
            pass  # Redis away: the record expires and the gateway reports NOT_SERVING

    def start(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="atelier-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 1)
        try:
            withdraw(self.client, self.prefix, self._status.worker)
        except redis.RedisError:
            pass
