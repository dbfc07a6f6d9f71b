"""The gRPC servicers: authenticate, convert, call the job service, convert back."""

from __future__ import annotations

import contextlib
import logging
import threading

import grpc

from atelier.v1 import generation_pb2, generation_pb2_grpc, models_pb2, models_pb2_grpc
from services.common.events import EventKind
from services.common.jobs import JobState
from services.gateway import convert, metrics, status, webhooks, wire
from services.gateway.auth import KeyRing, bearer_token
from services.gateway.catalog import ModelCatalog
from services.gateway.errors import Unauthenticated
from services.gateway.service import JobService

log = logging.getLogger(__name__)


@contextlib.contextmanager
def refusals(context: grpc.ServicerContext):
    """Answer a domain refusal with its gRPC status (and details)."""
    try:
        yield
    except Exception as exc:
        answer = status.for_error(exc)
        if answer is None:
            raise
        context.abort_with_status(answer)


def authenticate(keys: KeyRing, context: grpc.ServicerContext) -> str:
    token = bearer_token(context.invocation_metadata())
    tenant = keys.tenant(token) if token else None
    if tenant is None:
        reason = "missing `authorization: Bearer <api key>` metadata" if token is None else "unknown API key"
        with refusals(context):
            raise Unauthenticated(reason)
    return tenant


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, jobs: JobService, keys: KeyRing, stopping: threading.Event):
        self.jobs, self.keys, self.stopping = jobs, keys, stopping

    def _submit(self, request, context):
        tenant = authenticate(self.keys, context)
        limits = self.jobs.limits
        spec, violations, bulk = convert.spec_from_pb(request, max_images=limits.max_images_per_job,
                                                      max_dataset_images=limits.max_dataset_images)
        hook, hook_violations = webhooks.requested(request)
        with refusals(context):
            return tenant, self.jobs.submit(tenant, spec, bulk=bulk, violations=violations + hook_violations,
                                            webhook=hook)

    def Submit(self, request, context):
        _, s = self._submit(request, context)
        return convert.handle_to_pb(s.record, s.existing, s.position, s.eta_seconds)

    def Generate(self, request, context):
        tenant, s = self._submit(request, context)
        job_id = s.record.job_id
        finished = threading.Event()
        if request.cancel_on_disconnect:
            context.add_callback(lambda: self._cancel_abandoned(tenant, job_id, finished))
        for event in self._follow(tenant, job_id, "", context, s.record):  # no second read of the record
            if not s.existing:
                _observe(event, s.record.spec.priority)
            if event.is_final:
                finished.set()
            yield convert.event_to_pb(event)

    def _cancel_abandoned(self, tenant: str, job_id: str, finished: threading.Event) -> None:
        if finished.is_set() or self.stopping.is_set():
            return  # the stream ended normally, or the gateway is going away: the job lives on
        try:
            state, cancelled = self.jobs.cancel(tenant, job_id)
            log.info("job %s: client left its Generate stream, cancelled=%s (%s)", job_id, cancelled, state)
        except Exception:  # noqa: BLE001 - a callback must not raise into gRPC
            log.exception("could not cancel abandoned job %s", job_id)

    def _follow(self, tenant: str, job_id: str, after: str, context, record=None):
        with refusals(context):
            yield from self.jobs.watch(tenant, job_id, after, keep_going=context.is_active, record=record)

    def Watch(self, request, context):
        tenant = authenticate(self.keys, context)
        for event in self._follow(tenant, request.job_id, request.after_event_id, context):
            yield convert.event_to_pb(event)

    def GetJob(self, request, context):
        tenant = authenticate(self.keys, context)
        with refusals(context):
            return convert.job_to_pb(self.jobs.get(tenant, request.job_id))

    def CancelJob(self, request, context):
        tenant = authenticate(self.keys, context)
        with refusals(context):
            return convert.cancel_to_pb(*self.jobs.cancel(tenant, request.job_id))

    def ListJobs(self, request, context):
        tenant = authenticate(self.keys, context)
        query, violations = convert.history_query_from_pb(request)
        with refusals(context):
            return convert.jobs_page_to_pb(*self.jobs.list_jobs(tenant, query, violations))

    def GetContentPolicy(self, request, context):
        tenant = authenticate(self.keys, context)
        return convert.content_policy_to_pb(self.jobs.policies.for_tenant(tenant))

    def LookupImage(self, request, context):
        tenant = authenticate(self.keys, context)
        with refusals(context):
            return convert.image_matches_to_pb(self.jobs.lookup_image(tenant, request.image))


def _observe(event, queue: str) -> None:
    if event.kind == EventKind.STARTED and event.data.get("attempt", 1) <= 1:
        metrics.EDGE_QUEUE.labels(queue=queue).observe(event.data.get("queued_for_seconds", 0.0))
    elif event.kind == EventKind.FINISHED:
        outcome = str(event.data.get("state", JobState.FAILED)).lower()
        metrics.EDGE_LATENCY.labels(queue=queue, outcome=outcome).observe(event.data.get("elapsed_seconds", 0.0))


class ModelsServicer(models_pb2_grpc.ModelsServicer):
    def __init__(self, catalog: ModelCatalog, keys: KeyRing):
        self.catalog, self.keys = catalog, keys

    def ListModels(self, request, context):
        authenticate(self.keys, context)
        entries = self.catalog.entries(with_readiness=True)
        return models_pb2.ListModelsResponse(models=[convert.model_to_pb(e) for e in entries])


def add_to_server(server: grpc.Server, generation: GenerationServicer, models: ModelsServicer) -> None:
    """Serve both services; request bytes that do not parse answer INVALID_ARGUMENT (services.gateway.wire)."""
    wire.add_servicer(server, generation, generation_pb2.DESCRIPTOR.services_by_name["Generation"])
    wire.add_servicer(server, models, models_pb2.DESCRIPTOR.services_by_name["Models"])
