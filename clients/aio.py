"""asyncio Python client of an Atelier gateway; the same methods as :class:`clients.Client`.

    async with AsyncClient(address, api_key) as c:
        async for event in c.generate("a red fox", seeds=[7]):
            ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import models_pb2, types_pb2
from clients.client import RETRYABLE, Client, Connection, _read, backoff
from clients.errors import AtelierError, from_rpc_error
from clients.history import Pages, build_list_request


class AsyncClient(Connection):
    channels = grpc.aio

    async def _unary(self, method, request, retry: bool = True):
        for attempt in range(self.retries + 1):
            try:
                return await method(request, timeout=self.timeout, metadata=self._metadata())
            except grpc.aio.AioRpcError as err:
                if not (retry and err.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.retries):
                    raise from_rpc_error(err) from None
                await asyncio.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    async def submit(self, prompt: str = "", *, request: gen.GenerateRequest | None = None, **fields) -> gen.JobHandle:
        return await self._unary(self._gen.Submit, Client._request(prompt, request, fields))

    async def generate(
        self, prompt: str = "", *, request: gen.GenerateRequest | None = None, resume: bool = True, **fields
    ) -> AsyncIterator[gen.JobEvent]:
        req = Client._request(prompt, request, fields)
        last: gen.JobEvent | None = None
        try:
            async for event in self._gen.Generate(req, metadata=self._metadata()):
                last = event
                yield event
                if event.HasField("finished"):
                    return
        except grpc.aio.AioRpcError as err:
            if not (resume and last is not None and err.code() in RETRYABLE):
                raise from_rpc_error(err) from None
        if last is None:
            raise AtelierError("the Generate stream ended before the job was accepted")
        async for event in self.watch(last.job_id, last.id, resume=resume):
            yield event

    def upscale(self, image: bytes | str | Path, *, factor: int = 0, resume: bool = True,
                **fields) -> AsyncIterator[gen.JobEvent]:
        """Upscale an image by the upscaler's factor, once per seed (Client.upscale)."""
        return self.generate(upscale_image=image, upscale=factor, resume=resume, **fields)

    async def watch(
        self, job_id: str, after_event_id: str = "", *, resume: bool = True
    ) -> AsyncIterator[gen.JobEvent]:
        last_id, failures = after_event_id, 0
        while True:
            try:
                request = gen.WatchRequest(job_id=job_id, after_event_id=last_id)
                async for event in self._gen.Watch(request, metadata=self._metadata()):
                    last_id, failures = event.id, 0
                    yield event
                    if event.HasField("finished"):
                        return
            except grpc.aio.AioRpcError as err:
                if not (resume and err.code() in RETRYABLE and failures < self.retries):
                    raise from_rpc_error(err) from None
            if not resume or failures >= self.retries:
                raise AtelierError(f"the event stream of job {job_id} ended before its finished event")
            await asyncio.sleep(backoff(failures))
            failures += 1

    async def get(self, job_id: str) -> gen.Job:
        return await self._unary(self._gen.GetJob, gen.GetJobRequest(job_id=job_id))

    async def cancel(self, job_id: str) -> gen.CancelJobResponse:
        return await self._unary(self._gen.CancelJob, gen.CancelJobRequest(job_id=job_id))

    async def list_jobs(self, *, limit: int | None = None, page_size: int = 0,
                        **filters) -> AsyncIterator[gen.Job]:
        """This tenant's jobs, newest first, a page at a time (Client.list_jobs)."""
        pages = Pages(build_list_request(page_size=page_size, **filters), limit)
        while (request := pages.next_request()) is not None:
            for job in pages.jobs(await self._unary(self._gen.ListJobs, request)):
                yield job

    async def list_models(self) -> list[models_pb2.ModelInfo]:
        return list((await self._unary(self._models.ListModels, models_pb2.ListModelsRequest())).models)

    async def content_policy(self) -> types_pb2.ContentPolicy:
        """The content policy in force for this tenant (Client.content_policy)."""
        return await self._unary(self._gen.GetContentPolicy, gen.GetContentPolicyRequest())

    async def lookup_image(self, image: bytes | str | Path) -> list[gen.ImageMatch]:
        """:meth:`clients.client.Client.lookup_image`."""
        request = gen.LookupImageRequest(image=_read(image))
        return list((await self._unary(self._gen.LookupImage, request)).matches)

    async def health(self, service: str = "") -> str:
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
