"""Synchronous Python client of an Atelier gateway.

    from clients import Client
    with Client("127.0.0.1:50051", api_key) as c:
        for event in c.generate("a red fox", style="google", seeds=[7]):
            if event.HasField("artifact"):
                open("fox.png", "wb").write(event.artifact.data)
        big = c.generate("a red fox", upscale=4)       # 128x128: the base image, then the x4 upscaler
        larger = c.upscale("sprite.png", seeds=[7])    # a studio's own image, x4
        for job in c.list_jobs(states=["succeeded"], limit=20):  # this tenant's history, newest first
            print(job.job_id, job.created_at.ToDatetime())

Every method raises an :class:`~clients.errors.AtelierError` subclass on failure. Streams
resume by themselves after a dropped connection: the client remembers the id of the
last event it yielded and re-opens Watch after it, so nothing is missed or repeated.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import generation_pb2_grpc, models_pb2, models_pb2_grpc, types_pb2
from clients.errors import AtelierError, from_rpc_error
from clients.history import Pages, build_list_request
from clients.requests import build_request

DEFAULT_ADDRESS = "127.0.0.1:50051"
# Codes after which a stream (or an idempotent submit) is worth trying again.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
                       grpc.StatusCode.UNKNOWN})
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 256 << 20),  # raw RGBA artifacts can be large
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.keepalive_time_ms", 30_000),
)


def _read(value: bytes | str | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def channel_credentials(
    root_certificates: bytes | str | Path | None = None,
    private_key: bytes | str | Path | None = None,
    certificate_chain: bytes | str | Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials; give a key and certificate chain for mutual TLS. Paths or PEM bytes."""
    return grpc.ssl_channel_credentials(_read(root_certificates), _read(private_key), _read(certificate_chain))


def backoff(attempt: int) -> float:
    return min(5.0, 0.1 * 2**attempt)


class Connection:
    """What `Client` and `AsyncClient` share: one channel to the gateway (TLS when asked), its
    stubs and the API key. `channels` is the module that opens channels: grpc or grpc.aio."""

    channels = grpc

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        api_key: str | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        private_key: bytes | str | Path | None = None,
        certificate_chain: bytes | str | Path | None = None,
        timeout: float | None = 30.0,
        retries: int = 5,
        options: tuple = (),
    ):
        self.api_key, self.timeout, self.retries = api_key, timeout, retries
        opts = list(CHANNEL_OPTIONS) + list(options)
        if tls or root_certificates or private_key:
            creds = channel_credentials(root_certificates, private_key, certificate_chain)
            self.channel = self.channels.secure_channel(address, creds, opts)
        else:
            self.channel = self.channels.insecure_channel(address, opts)
        self._gen = generation_pb2_grpc.GenerationStub(self.channel)
        self._models = models_pb2_grpc.ModelsStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def _metadata(self):
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()


class Client(Connection):
    # --- plumbing

    def _unary(self, method, request, retry: bool = False):
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout, metadata=self._metadata())
            except grpc.RpcError as err:
                if not (retry and err.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.retries):
                    raise from_rpc_error(err) from None
                time.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    @staticmethod
    def _request(prompt: str, request: gen.GenerateRequest | None, fields: dict) -> gen.GenerateRequest:
        req = request if request is not None else build_request(prompt, **fields)
        if not req.request_id:
            # Makes retrying this call safe: the gateway returns the job it already made.
            req.request_id = uuid.uuid4().hex
        return req

    # --- the API

    def submit(self, prompt: str = "", *, request: gen.GenerateRequest | None = None, **fields) -> gen.JobHandle:
        """Queue a job; returns its handle (job id, seeds, queue position, ETA)."""
        return self._unary(self._gen.Submit, self._request(prompt, request, fields), retry=True)

    def generate(
        self, prompt: str = "", *, request: gen.GenerateRequest | None = None, resume: bool = True, **fields
    ) -> Iterator[gen.JobEvent]:
        """Submit and stream the job's events until its finished event."""
        req = self._request(prompt, request, fields)
        last: gen.JobEvent | None = None
        try:
            for event in self._gen.Generate(req, metadata=self._metadata()):
                last = event
                yield event
                if event.HasField("finished"):
                    return
        except grpc.RpcError as err:
            if not (resume and last is not None and err.code() in RETRYABLE):
                raise from_rpc_error(err) from None
        if last is None:
            raise AtelierError("the Generate stream ended before the job was accepted")
        yield from self.watch(last.job_id, last.id, resume=resume)

    def upscale(self, image: bytes | str | Path, *, factor: int = 0, resume: bool = True,
                **fields) -> Iterator[gen.JobEvent]:
        """Upscale an image (bytes or a path) by the upscaler's factor (`factor` 0 or that factor),
        once per seed; streams the job's events like :meth:`generate` (an UPSCALE job)."""
        return self.generate(upscale_image=image, upscale=factor, resume=resume, **fields)

    def watch(self, job_id: str, after_event_id: str = "", *, resume: bool = True) -> Iterator[gen.JobEvent]:
        """A job's events after `after_event_id` (all when empty) until its finished event."""
        last_id, failures = after_event_id, 0
        while True:
            try:
                stream = self._gen.Watch(gen.WatchRequest(job_id=job_id, after_event_id=last_id),
                                         metadata=self._metadata())
                for event in stream:
                    last_id, failures = event.id, 0
                    yield event
                    if event.HasField("finished"):
                        return
            except grpc.RpcError as err:
                if not (resume and err.code() in RETRYABLE and failures < self.retries):
                    raise from_rpc_error(err) from None
            if not resume or failures >= self.retries:
                raise AtelierError(f"the event stream of job {job_id} ended before its finished event")
            time.sleep(backoff(failures))
            failures += 1

    def get(self, job_id: str) -> gen.Job:
        return self._unary(self._gen.GetJob, gen.GetJobRequest(job_id=job_id), retry=True)

    def cancel(self, job_id: str) -> gen.CancelJobResponse:
        return self._unary(self._gen.CancelJob, gen.CancelJobRequest(job_id=job_id), retry=True)

    def list_jobs(self, *, limit: int | None = None, page_size: int = 0, **filters) -> Iterator[gen.Job]:
        """This tenant's jobs, newest first, fetched a page at a time (ListJobs) as the iterator
        is consumed; at most `limit`. Filters: `states` and `kinds` (names such as "succeeded",
        "txt2img"), `created_after` and `created_before` (datetimes or Unix seconds)."""
        pages = Pages(build_list_request(page_size=page_size, **filters), limit)
        while (request := pages.next_request()) is not None:
            yield from pages.jobs(self._unary(self._gen.ListJobs, request, retry=True))

    def list_models(self) -> list[models_pb2.ModelInfo]:
        return list(self._unary(self._models.ListModels, models_pb2.ListModelsRequest(), retry=True).models)

    def content_policy(self) -> types_pb2.ContentPolicy:
        """The content policy in force for this tenant: the concepts it blocks and each one's action
        (docs/API.md, "Content policy")."""
        return self._unary(self._gen.GetContentPolicy, gen.GetContentPolicyRequest(), retry=True)

    def lookup_image(self, image: bytes | str | Path) -> list[gen.ImageMatch]:
        """"Was this made here?": this tenant's delivered images that are the picture in `image`
        (bytes or a path), the exact file first (docs/API.md, "Was this made here?")."""
        request = gen.LookupImageRequest(image=_read(image))
        return list(self._unary(self._gen.LookupImage, request, retry=True).matches)

    def health(self, service: str = "") -> str:
        """"SERVING", "NOT_SERVING", ... for the server ("") or one service."""
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
