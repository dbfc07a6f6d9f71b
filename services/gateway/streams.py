"""Stream capacity: open streams have threads of their own, shared fairly between tenants.

The gateway's gRPC server holds one thread for each open server stream (Generate, Watch,
and the unauthenticated Health.Watch and reflection) for as long as it stays open. So that
streams can never take the threads that unary calls and health checks need, the server's
pool has `ATELIER_GATEWAY_THREADS` threads for unary calls plus one per stream slot
(`ATELIER_GATEWAY_MAX_STREAMS`), and this interceptor takes a slot when a stream starts and
gives it back when it ends. A tenant may hold at most `ATELIER_TENANT_MAX_STREAMS` slots
(calls without a valid API key share one such allowance), so one tenant cannot take every
slot from the others. A stream over either limit is answered RESOURCE_EXHAUSTED with a
RetryInfo at once, before it does any work. The limits are per gateway process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc

from services.gateway import status
from services.gateway.auth import KeyRing, bearer_token
from services.gateway.errors import Overloaded

RETRY_AFTER_SECONDS = 1.0  # streams end as their jobs do: a slot comes free within seconds
ANONYMOUS = ""  # the allowance shared by streams without a valid API key


class StreamSlots:
    """Counts open streams in all and per tenant; thread-safe."""

    def __init__(self, max_streams: int, max_per_tenant: int):
        self.max_streams, self.max_per_tenant = max_streams, max_per_tenant
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._total = 0

    def take(self, tenant: str) -> None:
        """Take a slot for `tenant`, or Overloaded (nothing taken) when a limit is reached."""
        with self._lock:
            held = self._open.get(tenant, 0)
            if held >= self.max_per_tenant:
                who = "tenant" if tenant != ANONYMOUS else "calls without an API key"
                raise Overloaded(
                    f"{who} holds {held} open streams, the limit is {self.max_per_tenant}",
                    retry_after=RETRY_AFTER_SECONDS,
                    reason="tenant_streams",
                )
            if self._total >= self.max_streams:
                raise Overloaded(
                    f"the gateway holds {self._total} open streams, its limit is {self.max_streams}",
                    retry_after=RETRY_AFTER_SECONDS,
                    reason="gateway_streams",
                )
            self._open[tenant] = held + 1
            self._total += 1

    def give_back(self, tenant: str) -> None:
        with self._lock:
            left = self._open[tenant] - 1
            if left:
                self._open[tenant] = left
            else:
                del self._open[tenant]
            self._total -= 1

    def open_streams(self, tenant: str | None = None) -> int:
        with self._lock:
            return self._total if tenant is None else self._open.get(tenant, 0)


class StreamLimits(grpc.ServerInterceptor):
    """Holds a slot of `slots` for each server stream while it runs (unary calls pass untouched)."""

    def __init__(self, slots: StreamSlots, keys: KeyRing):
        self.slots, self.keys = slots, keys

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._limited(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._limited(handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _tenant(self, context: grpc.ServicerContext) -> str:
        token = bearer_token(context.invocation_metadata())
        return (self.keys.tenant(token) if token else None) or ANONYMOUS

    def _limited(self, behavior: Callable[..., Iterator]) -> Callable[..., Iterator]:
        # Runs in the stream's own pool thread: the slot is taken there and given back when
        # the stream ends for any reason (finished, failed, client gone, server stopping).
        def stream(request, context):
            tenant = self._tenant(context)
            try:
                self.slots.take(tenant)
            except Overloaded as refused:
                context.abort_with_status(status.resource_exhausted(str(refused), refused.retry_after))
            try:
                yield from behavior(request, context)
            finally:
                self.slots.give_back(tenant)

        return stream
