"""Step-level continuous batching: many jobs' denoiser calls become one model call.

Each job runs its own sampler in its own thread; every step it calls the shared
:class:`BatchingDenoiser` with `(x, sigma, cond)` and blocks. One owner thread stacks
what is pending (up to `max_batch` rows, waiting at most `wait_ms` for more), runs the
model once, and hands each caller its rows back. Because every row carries its own
sigma (docs/ARCHITECTURE.md, Contracts: denoiser), jobs at different steps, with different samplers, seeds and
guidance scales share a call, and a job joining or leaving between steps changes
nothing for the others (TGI's continuous batching, at the granularity of a sampler step).

`cond` is a mapping of arrays whose first axis is the batch (token states, masks, style
ids, ...; an upscaler's upsampled input and augmentation level, services/worker/upscaler_runtime.py)
or None; requests are stacked only with requests of the same `x` row shape and the same cond
keys, row shapes and dtypes, so SR tiles of several jobs share a call as UNet rows do.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.common import metrics

Cond = Mapping[str, np.ndarray] | None
Model = Callable[[np.ndarray, np.ndarray, Cond], np.ndarray]


class NonFiniteOutput(FloatingPointError):
    """The denoiser returned NaN or infinity for a caller's rows."""


class DenoiserClosed(RuntimeError):
    """The batching denoiser was closed while a request waited."""


def _signature(x: np.ndarray, cond: Cond) -> tuple:
    cond_sig = () if cond is None else tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in cond.items()))
    return (x.shape[1:], x.dtype.str, cond_sig)


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


@dataclass(eq=False)
class _Request:
    x: np.ndarray
    sigma: np.ndarray
    cond: Cond
    signature: tuple
    caller: object = None  # shared by the pieces of one call
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


@dataclass
class BatchStats:
    """What the denoiser did, for tests and benchmarks (the metrics carry it to Prometheus)."""

    calls: int = 0
    rows: int = 0
    batch_sizes: collections.Counter = field(default_factory=collections.Counter)
    requests_per_call: collections.Counter = field(default_factory=collections.Counter)

    @property
    def max_requests_per_call(self) -> int:
        return max(self.requests_per_call, default=0)


class BatchingDenoiser:
    """`denoise(x, sigma, cond) -> x0`, thread-safe, backed by one owner thread that batches calls.

    Use `with denoiser.session():` around a job's sampling: the owner then knows how many
    jobs are active and stops waiting as soon as every one of them has a request pending,
    so a job running alone pays no batching delay. A job that is the only one active makes
    its calls in its own thread, with no hand-off to the owner and back (two thread wake-ups
    a step, each a scheduling delay on a busy machine: issue 19); a second job joining makes
    the next calls go through the owner again.
    """

    def __init__(self, model: Model, *, max_batch: int = 16, wait_ms: float = 2.0, name: str = "model"):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.model = model
        self.max_batch = int(max_batch)
        self.wait_seconds = float(wait_ms) / 1000.0
        self.name = name
        self.stats = BatchStats()
        self._pending: collections.deque[_Request] = collections.deque()
        self._sessions = 0
        self._closed = False
        self._owner_busy = False  # the owner thread is running a batch
        self._inline = False  # a lone job is calling the model in its own thread
        self._lock = threading.Condition()
        self._batch_metric = metrics.DENOISER_BATCH.labels(model=name)
        self._call_metric = metrics.DENOISER_CALL.labels(model=name)
        self._owner = threading.Thread(target=self._run, name=f"batching-denoiser-{name}", daemon=True)
        self._owner.start()

    # --- callers' side

    def __call__(self, x: np.ndarray, sigma: np.ndarray, cond: Cond = None) -> np.ndarray:
        x = np.asarray(x)
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (x.shape[0],))
        if x.shape[0] == 0:
            return x.copy()
        if x.shape[0] <= self.max_batch and self._claim_inline():
            try:
                out = self._call_model(x, sigma, cond, requests=1)
            finally:
                with self._lock:
                    self._inline = False
                    self._lock.notify_all()  # requests that came meanwhile go to the owner
            if not np.isfinite(out).all():
                raise NonFiniteOutput(f"{self.name} returned non-finite values")
            return out
        signature, caller = _signature(x, cond), object()
        # A request wider than one call is cut into pieces that may ride in different calls.
        pieces = [
            _Request(
                x[i : i + self.max_batch],
                sigma[i : i + self.max_batch],
                None if cond is None else {k: v[i : i + self.max_batch] for k, v in cond.items()},
                signature,
                caller,
            )
            for i in range(0, x.shape[0], self.max_batch)
        ]
        with self._lock:
            if self._closed:
                raise DenoiserClosed(self.name)
            self._pending.extend(pieces)
            self._lock.notify_all()
        for piece in pieces:
            piece.done.wait()
        for piece in pieces:
            if piece.error is not None:
                raise piece.error
        out = _stack([p.result for p in pieces])
        if not np.isfinite(out).all():
            raise NonFiniteOutput(f"{self.name} returned non-finite values")
        return out

    def _claim_inline(self) -> bool:
        """Whether this call may run in the caller's thread: one job active, nothing queued, the
        owner idle. The model then runs for no one else meanwhile."""
        with self._lock:
            if self._closed:
                raise DenoiserClosed(self.name)
            if self._sessions != 1 or self._pending or self._owner_busy or self._inline:
                return False
            self._inline = True
            return True

    @contextmanager
    def session(self) -> Iterator[None]:
        """Mark one job as active for the duration of its sampling."""
        with self._lock:
            self._sessions += 1
        try:
            yield
        finally:
            with self._lock:
                self._sessions -= 1
                self._lock.notify_all()  # the owner may be waiting for this job's next request

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._owner.join(timeout=5)

    # --- the owner thread

    def _everyone_waiting(self) -> bool:
        # Counted from the requests still queued, not from callers blocked in __call__: a caller
        # already served but not yet woken would otherwise count as waiting, and the owner would
        # run the first arrivals alone, splitting the jobs into alternating half-full calls.
        return self._sessions > 0 and len({id(r.caller) for r in self._pending}) >= self._sessions

    def _pending_rows(self) -> int:
        return sum(r.rows for r in self._pending)

    def _take_batch(self) -> list[_Request] | None:
        with self._lock:
            while (not self._pending or self._inline) and not self._closed:
                self._lock.wait()
            if not self._pending:
                return None
            deadline = time.monotonic() + self.wait_seconds
            while self._pending_rows() < self.max_batch and not self._everyone_waiting() and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            first = self._pending.popleft()
            batch, rows, skipped = [first], first.rows, []
            while self._pending and rows < self.max_batch:
                request = self._pending.popleft()
                if request.signature == first.signature and rows + request.rows <= self.max_batch:
                    batch.append(request)
                    rows += request.rows
                else:
                    skipped.append(request)
            self._pending.extendleft(reversed(skipped))  # they keep their place for the next call
            self._owner_busy = True
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._execute(batch)
            finally:
                with self._lock:
                    self._owner_busy = False

    def _execute(self, batch: list[_Request]) -> None:
        x = _stack([r.x for r in batch])
        sigma = _stack([r.sigma for r in batch])
        cond = None if batch[0].cond is None else {k: _stack([r.cond[k] for r in batch]) for k in batch[0].cond}
        try:
            out = self._call_model(x, sigma, cond, requests=len(batch))
        except BaseException as err:  # noqa: BLE001 - handed to exactly the callers of this call
            for r in batch:
                r.error = err
                r.done.set()
            return
        start = 0
        for r in batch:
            r.result = out[start : start + r.rows]
            start += r.rows
            r.done.set()

    def _call_model(self, x: np.ndarray, sigma: np.ndarray, cond: Cond, requests: int) -> np.ndarray:
        """One model call, counted (by the owner, or by a lone job in its own thread: never both at once)."""
        started = time.perf_counter()
        try:
            out = np.asarray(self.model(x, sigma, cond))
            if out.shape[0] != x.shape[0]:
                raise ValueError(f"{self.name} returned {out.shape[0]} rows for {x.shape[0]}")
            return out
        finally:
            self._call_metric.observe(time.perf_counter() - started)
            self._batch_metric.observe(x.shape[0])
            self.stats.calls += 1
            self.stats.rows += x.shape[0]
            self.stats.batch_sizes[x.shape[0]] += 1
            self.stats.requests_per_call[requests] += 1

    def __enter__(self) -> BatchingDenoiser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def sampling(denoise):
    """A job's sampling stage against `denoise`: a batching denoiser's session (the job counts as
    active, so the owner never waits for it while it is elsewhere); nothing for a plain denoiser
    (batching off, or a runtime's own)."""
    session = getattr(denoise, "session", None)
    return session() if session is not None else nullcontext()
