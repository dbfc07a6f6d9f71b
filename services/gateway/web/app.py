"""The HTTP/JSON API and the playground page as one Starlette app (docs/API.md, "HTTP/JSON API").

Every API route calls a gRPC servicer's method (routes.py) with the request as an
`HttpCallContext`, so both edges run the same authentication, validation, quotas and
idempotency. Handlers run in Starlette's thread pool: the servicers block on Redis.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from atelier.v1 import generation_pb2
from services.gateway import metrics
from services.gateway.auth import KeyRing
from services.gateway.convert import event_to_pb
from services.gateway.service import JobService
from services.gateway.servicers import authenticate, refusals
from services.gateway.streams import StreamSlots
from services.gateway.validation import event_id
from services.gateway.web import openapi, routes
from services.gateway.web.calls import HttpCallContext, Refused, invalid, not_found
from services.gateway.web.transcode import request_of, to_json

STATIC = Path(__file__).with_name("static")
# A comment line every so often keeps proxies and load balancers from closing a quiet event stream.
HEARTBEAT_SECONDS = 15.0
_END = object()


class OpenStreams:
    """The event streams being served, so that a stopping gateway ends them (as gRPC's stop does)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: set[HttpCallContext] = set()

    def add(self, context: HttpCallContext) -> None:
        with self._lock:
            self._open.add(context)

    def discard(self, context: HttpCallContext) -> None:
        with self._lock:
            self._open.discard(context)

    def end_all(self) -> None:
        with self._lock:
            open_now = list(self._open)
        for context in open_now:
            context.end()


def build_app(servicers: dict[str, object], jobs: JobService, keys: KeyRing, slots: StreamSlots,
              max_body_bytes: int, streams: OpenStreams | None = None) -> Starlette:
    """The app; `servicers` maps "Generation" and "Models" to the gRPC servicer objects."""
    streams = streams or OpenStreams()
    document = openapi.document()
    handlers = [Route(r.path, _events(r, servicers[r.service], keys, slots, streams) if r.events
                      else _unary(r, getattr(servicers[r.service], r.rpc), max_body_bytes), methods=[r.verb])
                for r in routes.ROUTES]
    handlers += [
        Route(routes.ARTIFACT_PATH, _artifact(jobs, keys), methods=["GET"]),
        Route("/openapi.json", lambda _: JSONResponse(document), methods=["GET"]),
        Route("/", lambda _: FileResponse(STATIC / "index.html"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=handlers)
    app.state.streams = streams
    return app


def _context(request: Request) -> HttpCallContext:
    peer = f"ipv4:{request.client.host}:{request.client.port}" if request.client else ""
    return HttpCallContext(request.headers.get("authorization"), peer)


def _error(refused: Refused) -> JSONResponse:
    retry = refused.retry_after_seconds()
    headers = {"Retry-After": str(retry)} if retry is not None else None
    return JSONResponse(refused.body(), status_code=refused.http_status, headers=headers)


def _observed(template: str):
    """Counts and times each call by route template and HTTP status (the gRPC edge's metrics)."""
    def wrap(handler: Callable) -> Callable:
        async def observed(request: Request) -> Response:
            started, code = time.perf_counter(), 500
            try:
                response = await handler(request)
                code = response.status_code
                return response
            finally:
                metrics.HTTP_REQUESTS.labels(route=template, code=str(code)).inc()
                metrics.HTTP_SECONDS.labels(route=template).observe(time.perf_counter() - started)
        return observed
    return wrap


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> Refused:
    return invalid("body", f"{size} bytes is over the limit of {limit} bytes", http_status=413)


def _unary(route: routes.Route, method: Callable, max_body_bytes: int) -> Callable:
    @_observed(route.path)
    async def handle(request: Request) -> Response:
        context = _context(request)
        try:
            body = await _body(request, max_body_bytes) if route.body else b""
            message = request_of(route, dict(request.path_params), request.query_params.multi_items(), body)
            key = request.headers.get("idempotency-key")
            if key and route.rpc == "Submit" and not message.request_id:
                message.request_id = key
            response = await run_in_threadpool(method, message, context)
        except Refused as refused:
            return _error(refused)
        except ClientDisconnect:
            return Response(status_code=499)
        finally:
            context.end()
        return JSONResponse(to_json(response))
    return handle


def _events(route: routes.Route, servicer, keys: KeyRing, slots: StreamSlots, streams: OpenStreams) -> Callable:
    @_observed(route.path)
    async def handle(request: Request) -> Response:
        context = _context(request)
        job_id = request.path_params["job_id"]
        # `Last-Event-ID` is what a browser's EventSource sends when it reconnects; the query
        # parameter is for clients that start from an id they kept.
        after = request.headers.get("last-event-id") or request.query_params.get("after_event_id", "")
        try:
            tenant = authenticate(keys, context)
            problems = event_id("after_event_id", after) if after else []
            if problems:
                raise invalid(*problems[0])
            # Refused before the stream starts: an unknown or another tenant's job is a 404, not an event.
            await run_in_threadpool(servicer.GetJob, generation_pb2.GetJobRequest(job_id=job_id), context)
            with refusals(context):
                slots.take(tenant)
        except Refused as refused:
            context.end()
            return _error(refused)
        events = servicer.Watch(generation_pb2.WatchRequest(job_id=job_id, after_event_id=after), context)
        streams.add(context)

        async def body() -> AsyncIterator[str]:
            try:
                async for chunk in _sse(events):
                    yield chunk
            finally:
                context.end()  # the watch notices within its poll interval and lets go of Redis
                streams.discard(context)
                slots.give_back(tenant)

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return handle


async def _sse(events: Iterator) -> AsyncIterator[str]:
    """Server-sent events of the job's events, with a comment line while none comes; a refusal
    mid-stream (a malformed resume id, Redis gone) is an `error` event, then the end."""
    loop = asyncio.get_running_loop()
    while True:
        pending = loop.run_in_executor(None, _next_or_refusal, events)
        while True:
            done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
            if done:
                break
            yield ": keep-alive\n\n"
        item = pending.result()
        if item is _END:
            return
        if isinstance(item, Refused):
            yield f"event: error\ndata: {json.dumps(item.body())}\n\n"
            return
        yield _sse_event(item)


def _next_or_refusal(events: Iterator):
    try:
        return next(events, _END)
    except Refused as refused:
        return refused


def _sse_event(event: generation_pb2.JobEvent) -> str:
    return f"id: {event.id}\nevent: {event.WhichOneof('event') or 'unknown'}\ndata: {json.dumps(to_json(event))}\n\n"


def _artifact(jobs: JobService, keys: KeyRing) -> Callable:
    @_observed(routes.ARTIFACT_PATH)
    async def handle(request: Request) -> Response:
        context = _context(request)
        job_id, index = request.path_params["job_id"], request.path_params["index"]
        try:
            tenant = authenticate(keys, context)
            if not index.isdigit():
                raise invalid("index", f"must be an image's index (0, 1, ...), not {index!r}")
            with refusals(context):
                event = await run_in_threadpool(jobs.artifact, tenant, job_id, int(index))
        except Refused as refused:
            return _error(refused)
        if event is None or not event.blob:
            reason = "is filtered: it has no file" if event is not None else "does not exist (yet)"
            return _error(not_found(f"artifact {index} of job {job_id} {reason}"))
        artifact = event_to_pb(event).artifact
        extension = artifact.mime_type.rsplit("/", 1)[-1].replace("octet-stream", "bin")
        name = f"{job_id}-{artifact.index}-seed{artifact.seed}.{extension}"
        return Response(event.blob, media_type=artifact.mime_type or "application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "private, max-age=3600"})
    return handle

