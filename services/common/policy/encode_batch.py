"""Concurrent callers' texts encoded in one text-encoder call (the gateway's prompt check).

Every Submit needs its new clauses encoded (and scored against the exemplars:
SemanticMatcher batches both), and with tens of clients Submits arrive together. One call per
Submit paid the call's fixed cost each time and ran as many encoder calls and BLAS products side
by side as there were Submits, on a machine with a core or two: 9-35 Submits/s with 50 clients
(docs/BENCHMARKS.md, "Interactive latency"). Here no thread of its own does the work and nothing
waits for a batch to fill: the first caller to find no call running becomes the leader and
encodes what is pending at that moment (its own texts and those of callers that came while the
previous call ran, each text once), up to `max_rows`; the others wait for their rows. When a call
ends, its leader hands the lead to the oldest caller still pending, so a lone caller always runs
its own call at once, as before; an error goes to the callers of the call that raised it.

ONNX Runtime and numpy's products release the GIL, so while one call runs, the Submit threads'
Python goes on beside it; one call at a time is what a small gateway's cores allow anyway.
A row does not depend on the other rows of its call (the encoder reads each text alone under
its attention mask; tests/services/test_policy_encode_batch.py holds the verdicts to that).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Encode = Callable[[list[str]], np.ndarray]  # as services.common.policy.semantic's

# Rows in one call: past a few dozen short texts the shipped encoder's cost per row grows again
# (its activations leave the cache), and a caller behind a long call waits for all of it.
MAX_ROWS = 32


@dataclass(eq=False)
class _Request:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # handed the lead: this caller runs the next call
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatchedEncode:
    """`encode(texts) -> [N, D]`, thread-safe; concurrent calls share encoder calls."""

    def __init__(self, encode: Encode, max_rows: int = MAX_ROWS):
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.encode, self.max_rows = encode, int(max_rows)
        self.calls = 0  # encoder calls made, for tests and benchmarks
        self._pending: collections.deque[_Request] = collections.deque()
        self._running = False  # a leader holds the lead (between taking a batch and handing on)
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Callers whose texts no call has taken yet."""
        with self._lock:
            return len(self._pending)

    def __call__(self, texts: list[str]) -> np.ndarray:
        request = _Request(list(texts))
        with self._lock:
            self._pending.append(request)
            if not self._running:
                self._running = request.lead = True
        while not request.lead:
            request.done.wait()
            if request.result is not None or request.error is not None:
                break
            request.done.clear()  # woken to lead: the result comes from its own call
        if request.lead:
            self._lead()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _take(self) -> list[_Request]:
        """The oldest pending requests, up to max_rows texts (at least one request, however long)."""
        with self._lock:
            batch = [self._pending.popleft()]
            rows = len(batch[0].texts)
            while self._pending and rows + len(self._pending[0].texts) <= self.max_rows:
                rows += len(self._pending[0].texts)
                batch.append(self._pending.popleft())
            return batch

    def _lead(self) -> None:
        batch = self._take()
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._pending:
                    self._pending[0].lead = True
                    self._pending[0].done.set()
                else:
                    self._running = False
            for r in batch:
                r.done.set()

    def _run(self, batch: list[_Request]) -> None:
        unique = list(dict.fromkeys(t for r in batch for t in r.texts))
        try:
            states = np.asarray(self.encode(unique)) if unique else None
            self.calls += 1 if unique else 0
            if states is not None and (states.ndim != 2 or states.shape[0] != len(unique)):
                raise ValueError(f"the encoder returned {states.shape} for {len(unique)} texts")
        except BaseException as exc:  # the callers of this call raise it, and nobody else
            for r in batch:
                r.error = exc
            return
        row = {t: i for i, t in enumerate(unique)}
        for r in batch:
            r.result = (states[[row[t] for t in r.texts]] if r.texts and states is not None
                        else np.zeros((0, 0), dtype=np.float32))
