"""One job timed two ways for bench.gateway: through the service, and sampled in-process.

Through the service, the client's wall time from the Generate call to the `finished` event is
split at the events' own timestamps (all processes share this machine's clock):

    submit    call -> `queued`      gRPC, auth, validation, admission, job record
    dispatch  `queued` -> `started`  Celery publish, broker delivery, worker loads the record
    run       `started` -> `finished` the worker's sampling with its per-step Redis traffic
    deliver   `finished` -> client   XREAD wake-up in the gateway, gRPC stream to the client

In-process, the same job runs through services.worker.pipeline on an ONNX runtime loaded
with the same settings, reporting to nothing: no gRPC, Redis or Celery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from atelier.v1 import types_pb2
from services.common.jobs import JobRecord, JobSpec, PromptSpec
from services.common.plan import resolve
from services.worker import pipeline


@dataclass(frozen=True)
class ServiceTiming:
    total: float  # seconds, client's call -> finished event received
    submit: float
    dispatch: float
    run: float
    deliver: float
    events: int
    state: str

    def parts(self) -> dict[str, float]:
        return {"submit": self.submit, "dispatch": self.dispatch, "run": self.run, "deliver": self.deliver}


def _seconds(ts) -> float:
    return ts.ToNanoseconds() / 1e9


def time_service_job(client, prompt: str, **fields: Any) -> ServiceTiming:
    """Generate one job through the gateway (the SDK's Generate stream) and time its stages."""
    wall0, t0 = time.time(), time.perf_counter()
    stamps: dict[str, float] = {}
    events, state = 0, ""
    for event in client.generate(prompt, **fields):
        events += 1
        kind = event.WhichOneof("event")
        stamps.setdefault(kind, _seconds(event.time))
        if kind == "finished":
            state = types_pb2.JobState.Name(event.finished.state)
    total = time.perf_counter() - t0
    done = wall0 + total  # the receive time on the wall clock the events use
    return ServiceTiming(
        total=total,
        submit=stamps["queued"] - wall0,
        dispatch=stamps["started"] - stamps["queued"],
        run=stamps["finished"] - stamps["started"],
        deliver=done - stamps["finished"],
        events=events,
        state=state,
    )


class _NullReporter:
    """Where an in-process job reports: nowhere (the pipeline's JobReporter protocol)."""

    def check(self) -> None:
        pass

    def progress(self, steps_done: int, steps_total: int, images_done: int) -> None:
        pass

    def preview(self, index: int, step: int, jpeg: bytes, width: int, height: int) -> None:
        pass

    def artifact(self, data: dict[str, Any], blob: bytes) -> None:
        self.last_blob = blob


class InProcess:
    """The worker's pipeline on a runtime loaded here, called directly."""

    def __init__(self, settings, model: str):
        from services.worker.onnx_runtime import load_runtime

        started = time.perf_counter()
        self.runtime = load_runtime(settings, model)
        self.load_seconds = time.perf_counter() - started
        self.info = self.runtime.info

    def run(self, prompt: str, *, seed: int, width: int = 0, height: int = 0, steps: int = 0,
            style: str = "") -> float:
        spec = JobSpec(prompts=(PromptSpec(prompt, style=style),), seeds=(seed,), width=width, height=height,
                       steps=steps)
        job = JobRecord(job_id="in-process", tenant="bench", spec=spec.with_(plan=resolve(spec, self.info)))
        started = time.perf_counter()
        # The runtime's own (unbatched) denoiser: the least a job can cost on this runtime.
        pipeline.generate(job, self.runtime, lambda tiling, shape: self.runtime.denoiser(tiling), _NullReporter())
        return time.perf_counter() - started

    def smallest_size(self) -> int:
        """The smallest side the model really samples (a multiple of the latent factor)."""
        factor = self.info.latent_factor
        if not self.info.dynamic_size:
            return min(self.info.width, self.info.height)
        for side in (factor, 2 * factor, 4 * factor, 8 * factor):
            print(f"  probing {side}x{side} (a UNet that cannot halve it fails; ONNX Runtime logs that)", flush=True)
            try:
                self.run("probe", seed=0, width=side, height=side, steps=1)
                return side
            except Exception:  # noqa: BLE001 - a UNet whose levels cannot halve this size fails in ONNX Runtime
                continue
        return min(self.info.width, self.info.height)
