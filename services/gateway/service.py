"""What the gateway does with a job, with no protobuf in sight.

Submit: validate -> idempotency -> admit and store (one atomic step, with the `queued`
event) -> enqueue. Watch: the job's event log from any position, following it until the
job's final event. Get, Cancel and List: the job store, scoped to the caller's tenant.
Every call answers Unavailable (gRPC UNAVAILABLE with RetryInfo) while Redis does not.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis
from kombu.exceptions import OperationalError

from services.common.events import EventKind, JobEvent
from services.common.jobs import ErrorCode, JobRecord, JobSpec, JobState
from services.common.plan import wants_upscale
from services.common.store import ImageMatch, JobNotFound, JobStore, new_job_id
from services.common.webhooks.config import Webhooks
from services.common.webhooks.deliveries import job_record
from services.gateway import history, image_lookup, metrics, webhooks
from services.gateway.admission import Admission
from services.gateway.catalog import ModelCatalog
from services.gateway.content_policy import ContentPolicies
from services.gateway.enqueue import Enqueue
from services.gateway.errors import InvalidRequest, Overloaded, Unavailable
from services.gateway.history import HistoryQuery
from services.gateway.planning import planned
from services.gateway.validation import Limits, Violation, event_id, validate
from services.gateway.webhooks import JobWebhook

log = logging.getLogger(__name__)

# Redis down, restarting or loading its AOF (BusyLoadingError is a ConnectionError), or the
# broker's publish failing for the same reason: the client should retry, not give up.
REDIS_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError)
RETRY_AFTER_SECONDS = 1.0


@contextlib.contextmanager
def _redis_reachable():
    try:
        yield
    except REDIS_UNREACHABLE as err:
        raise Unavailable(f"the job store is unavailable ({err}); retry shortly", RETRY_AFTER_SECONDS) from err


def _unavailable_without_redis(method):
    """The method (or generator) raises Unavailable, not Redis' own error, while Redis is unreachable."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream(*args, **kwargs):
            with _redis_reachable():
                yield from method(*args, **kwargs)
        return stream

    @functools.wraps(method)
    def call(*args, **kwargs):
        with _redis_reachable():
            return method(*args, **kwargs)
    return call


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
        webhooks: Webhooks | None = None,
    ):
        self.store, self.catalog, self.admission, self.enqueue = store, catalog, admission, enqueue
        self.limits, self.clock, self.poll_seconds = limits, clock, poll_seconds
        self.webhooks = webhooks or Webhooks(None)
        # The server sets the full prompt check (services.gateway.content_policy.from_settings).
        self.policies = ContentPolicies.terms_only()

    # --- submit

    @_unavailable_without_redis
    def submit(self, tenant: str, spec: JobSpec, *, bulk: bool, violations: list[Violation] = (),
               webhook: JobWebhook | None = None) -> Submitted:
        hooks = self.webhooks.tenant(tenant)
        endpoint, refused = webhooks.endpoint_for(webhook, hooks)
        found = list(violations) + validate(
            spec, bulk=bulk, catalog=self.catalog, limits=self.limits, now=self.clock()
        ) + refused
        if found:
            metrics.REJECTED.labels(reason="invalid").inc()
            raise InvalidRequest(found)
        model = None if spec.upscale_image is not None else self.catalog.resolve(spec.model, spec.model_version)
        upscaler = self.catalog.resolve_upscaler(spec.upscaler, spec.upscaler_version) if wants_upscale(spec) else None
        # Resolved once, against the versions validated against: the worker runs this plan.
        # The output concept check: the catalog's classifier, under the tenant's content policy.
        spec = planned(spec, model, upscaler, self.catalog.concepts(), self.policies.for_tenant(tenant))
        spec = self.policies.screen(tenant, spec, bulk)

        if spec.request_id:
            existing = self._existing(tenant, spec.request_id)
            if existing:
                return existing
        steps = spec.plan.steps_per_image * spec.plan.images_total
        job_id, now = new_job_id(), self.clock()
        # Where the enqueue can say how it sends a job, the admission script sends it too: one round trip.
        message = self.enqueue.message(job_id, spec.priority) if hasattr(self.enqueue, "message") else None
        try:
            placement = self.admission.admit(tenant, spec, steps, now=now, job_id=job_id, broker_message=message,
                                             webhooks=job_record(endpoint) if webhooks.wanted(hooks, endpoint) else "")
        except Overloaded as exc:
            metrics.REJECTED.labels(reason=exc.reason).inc()
            raise
        if not placement.created:  # a concurrent submission with the same request_id won the race
            return Submitted(self.store.get(placement.job_id, tenant), True, 0, 0.0)
        if not placement.sent:
            self._send(job_id, spec.priority)
        metrics.SUBMITTED.labels(queue=spec.priority).inc()
        # The record as the admission step wrote it: no second read.
        record = JobRecord(job_id, tenant, spec, JobState.QUEUED, created_at=now, steps_total=steps,
                           kind=spec.plan.kind)
        return Submitted(record, False, placement.position, placement.eta_seconds)

    def _send(self, job_id: str, queue: str) -> None:
        """Hand a stored job to the broker and take it out of the outbox (an enqueue the admission
        script could not make itself)."""
        try:
            self.enqueue(job_id, queue)
        except Exception:
            log.exception("could not queue job %s; failing it", job_id)
            self.store.finish(job_id, None, JobState.FAILED, ErrorCode.INTERNAL, "the gateway could not queue the job")
            self.store.sent(job_id)
            raise
        self.store.sent(job_id)

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

    @_unavailable_without_redis
    def get(self, tenant: str, job_id: str) -> JobRecord:
        return self.store.get(job_id, tenant)

    @_unavailable_without_redis
    def cancel(self, tenant: str, job_id: str) -> tuple[str, bool]:
        return self.store.cancel(job_id, tenant, now=self.clock())

    @_unavailable_without_redis
    def list_jobs(
        self, tenant: str, query: HistoryQuery, violations: list[Violation] = ()
    ) -> tuple[list[JobRecord], str]:
        """A page of the tenant's jobs, newest first, and the token of the next page ("" after the last)."""
        if violations:
            raise InvalidRequest(list(violations))
        after = history.decode_token(tenant, query.where, query.page_token) if query.page_token else None
        page = self.store.history(tenant, query.page_size, query.where, after)
        token = history.encode_token(tenant, query.where, page.next) if page.next is not None else ""
        return page.records, token

    @_unavailable_without_redis
    def watch(
        self, tenant: str, job_id: str, after: str = "", keep_going: Callable[[], bool] = lambda: True,
        record: JobRecord | None = None,
    ) -> Iterator[JobEvent]:
        """Events after `after` until the final one; stops early when keep_going() turns false.

        Raises JobNotFound (before yielding anything) for an unknown or foreign job.
        `record`: the job as the caller has just stored or read it (a Generate's), which saves
        reading it again.
        """
        if record is None or record.job_id != job_id:
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

    @_unavailable_without_redis
    def lookup_image(self, tenant: str, data: bytes) -> list[ImageMatch]:
        """The tenant's delivered images that are the picture in ``data`` ("was this made here?")."""
        return image_lookup.lookup(self.store, self.limits, tenant, data)

    @_unavailable_without_redis
    def artifact(self, tenant: str, job_id: str, index: int) -> JobEvent | None:
        """The `artifact` event of image `index` (its blob is the file), None while there is none;
        JobNotFound for an unknown or foreign job."""
        self.store.get(job_id, tenant)
        for event in self.store.read_events(job_id):
            if event.kind == EventKind.ARTIFACT and event.data.get("index") == index:
                return event
        return None


def _check_event_id(after: str) -> None:
    found = event_id("after_event_id", after)
    if found:
        raise InvalidRequest(found)
