"""What the gateway does with a job, with no protobuf in sight.

Submit: validate -> idempotency -> admit -> store (atomically, with the `queued` event)
-> enqueue. Watch: the job's event log from any position, following it until the
job's final event. Get and Cancel: the job store, scoped to the caller's tenant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from services.common.events import JobEvent
from services.common.jobs import ErrorCode, JobRecord, JobSpec, JobState
from services.common.store import JobNotFound, JobStore
from services.gateway import metrics
from services.gateway.admission import Admission
from services.gateway.catalog import ModelCatalog
from services.gateway.enqueue import Enqueue
from services.gateway.errors import InvalidRequest, Overloaded
from services.gateway.validation import Limits, Violation, validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    record: JobRecord
    existing: bool
    position: int
    eta_seconds: float


class JobService:
    def __init__(
        self,
        store: JobStore,
        catalog: ModelCatalog,
        admission: Admission,
        enqueue: Enqueue,
        limits: Limits,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.5,
    ):
        self.store, self.catalog, self.admission, self.enqueue = store, catalog, admission, enqueue
        self.limits, self.clock, self.poll_seconds = limits, clock, poll_seconds

    # --- submit

    def submit(self, tenant: str, spec: JobSpec, *, bulk: bool, violations: list[Violation] = ()) -> Submitted:
        found = list(violations) + validate(
            spec, bulk=bulk, catalog=self.catalog, limits=self.limits, now=self.clock()
        )
        if found:
            metrics.REJECTED.labels(reason="invalid").inc()
            raise InvalidRequest(found)
        model = self.catalog.resolve(spec.model, spec.model_version)
        # Pin the version validated against, so the job runs on what was checked.
        spec = spec.with_(model=model.name, model_version=model.version)

        if spec.request_id:
            existing = self._existing(tenant, spec.request_id)
            if existing:
                return existing
        steps = (spec.steps or model.manifest.defaults.steps) * spec.images_total
        try:
            placement = self.admission.admit(tenant, spec.priority, steps)
        except Overloaded as exc:
            metrics.REJECTED.labels(reason=exc.reason).inc()
            raise
        job_id, created = self.store.create(
            tenant, spec, steps_total=steps, queue_position=placement.position, eta_seconds=placement.eta_seconds,
            now=self.clock(),
        )
        if not created:  # a concurrent submission with the same request_id won the race
            return Submitted(self.store.get(job_id, tenant), True, 0, 0.0)
        try:
            self.enqueue(job_id, spec.priority)
        except Exception:
            log.exception("could not queue job %s; failing it", job_id)
            self.store.finish(job_id, None, JobState.FAILED, ErrorCode.INTERNAL, "the gateway could not queue the job")
            self.store.sent(job_id)
            raise
        self.store.sent(job_id)
        metrics.SUBMITTED.labels(queue=spec.priority).inc()
        return Submitted(self.store.get(job_id, tenant), False, placement.position, placement.eta_seconds)

    def _existing(self, tenant: str, request_id: str) -> Submitted | None:
        job_id = self.store.find_request(tenant, request_id)
        if not job_id:
            return None
        try:
            record = self.store.get(job_id, tenant)
        except JobNotFound:
            return None  # expired: the request id is free again
        return Submitted(record, True, 0, 0.0)

    # --- read and cancel

    def get(self, tenant: str, job_id: str) -> JobRecord:
        return self.store.get(job_id, tenant)

    def cancel(self, tenant: str, job_id: str) -> tuple[str, bool]:
        return self.store.cancel(job_id, tenant, now=self.clock())

    def watch(
        self, tenant: str, job_id: str, after: str = "", keep_going: Callable[[], bool] = lambda: True
    ) -> Iterator[JobEvent]:
        """Events after `after` until the final one; stops early when keep_going() turns false.

        Raises JobNotFound (before yielding anything) for an unknown or foreign job.
        """
        record = self.store.get(job_id, tenant)
        if after:
            _check_event_id(after)
        if record.is_final:  # the log is complete: no need to follow it
            yield from self.store.read_events(job_id, after)
            return
        last = after
        block_ms = max(1, int(self.poll_seconds * 1000))
        while keep_going():
            # follow_events returns after ~poll_seconds without news, so a stream whose
            # client left, or a gateway stopping, is noticed within that time.
            for event in self.store.follow_events(job_id, last, block_ms=block_ms, timeout=self.poll_seconds):
                last = event.id
                yield event
                if event.is_final:
                    return
                if not keep_going():
                    return


def _check_event_id(event_id: str) -> None:
    ms, _, seq = event_id.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise InvalidRequest([("after_event_id", f"{event_id[:40]!r} is not an event id (JobEvent.id)")])
