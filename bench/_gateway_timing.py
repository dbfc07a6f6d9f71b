"""One job timed two ways for bench.gateway: through the service, and sampled in-process.

Through the service, the client's wall time from the Generate call to the `finished` event is
split into the stages of the interactive path, at the events' own timestamps and at the
moments the in-process gateway's admission and enqueue returned (:class:`GatewayProbe`; all
processes share this machine's clock):

    accept    call -> `queued`, less the  gRPC, auth, parsing, validation, planning
              screen
    screen    the prompt check            the content policy's check of the prompts (the text
                                          encoder at the gateway, services/gateway/content_policy.py)
    admit     `queued` -> admitted        the admission script: quotas, record, queued event
                                          (and, where the script also enqueues, the broker message)
    enqueue   admitted -> on the broker   the separate publish, when there is one
    pickup    on the broker -> `started`  broker delivery, the worker's record read, lease, begin
    run       `started` -> `artifact`     conditioning, every step, decoding, encoding, with the
                                          worker's progress events and the artifact write
    finish    `artifact` -> `finished`    the last progress event and the finish script
    deliver   `finished` -> client        XREAD wake-up in the gateway, gRPC stream to the client

In-process, the same job runs through services.worker.pipeline on an ONNX runtime loaded
with the same settings, reporting to a recorder: no gRPC, Redis or Celery. Its stages are
`first_step` (start -> the first step done: conditioning and one step), `steps` (the other
steps), `to_artifact` (decoding and encoding) and `finish` (the rest), so the service's `run`
can be read against the compute it holds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from atelier.v1 import types_pb2
from services.common.jobs import JobRecord, JobSpec, PromptSpec
from services.common.plan import resolve
from services.worker import pipeline

SERVICE_STAGES = ("accept", "screen", "admit", "enqueue", "pickup", "run", "finish", "deliver")
IN_PROCESS_STAGES = ("first_step", "steps", "to_artifact", "finish")


@dataclass(frozen=True)
class ServiceTiming:
    total: float  # seconds, client's call -> finished event received
    stages: dict[str, float]
    events: int
    state: str

    def parts(self) -> dict[str, float]:
        return dict(self.stages)

    @property
    def fixed(self) -> float:
        """The stages that hold no sampling: everything but `run` and `finish`."""
        return sum(v for k, v in self.stages.items() if k not in ("run", "finish"))


class GatewayProbe:
    """Records when the in-process gateway's admission and enqueue return, per job id, and how long
    its prompt check took, per prompt.

    It wraps the JobService's collaborators (composition, no patching of modules); the wrapped
    calls are the gateway's own."""

    def __init__(self, jobs):
        self._lock = threading.Lock()
        self.admitted: dict[str, float] = {}
        self.enqueued: dict[str, float] = {}
        self.screened: dict[str, float] = {}  # first prompt -> seconds in the prompt check
        admission, enqueue, policies = jobs.admission, jobs.enqueue, getattr(jobs, "policies", None)
        probe = self

        class TimedPolicies:
            def __getattr__(self, name):
                return getattr(policies, name)

            def screen(self, tenant, spec, bulk):
                started = time.perf_counter()
                try:
                    return policies.screen(tenant, spec, bulk)
                finally:
                    with probe._lock:
                        probe.screened[spec.prompts[0].prompt if spec.prompts else ""] = time.perf_counter() - started

        class TimedAdmission:
            def __getattr__(self, name):
                return getattr(admission, name)

            def admit(self, *args, **kwargs):
                placement = admission.admit(*args, **kwargs)
                probe._mark(probe.admitted, placement.job_id)
                return placement

        class TimedEnqueue:
            def __getattr__(self, name):
                return getattr(enqueue, name)

            def __call__(self, job_id, queue):
                enqueue(job_id, queue)
                probe._mark(probe.enqueued, job_id)

        jobs.admission, jobs.enqueue = TimedAdmission(), TimedEnqueue()
        if policies is not None:
            jobs.policies = TimedPolicies()

    def _mark(self, where: dict[str, float], job_id: str) -> None:
        now = time.time()
        with self._lock:
            where[job_id] = now

    def take(self, job_id: str, prompt: str) -> tuple[float, float, float]:
        """(admitted, on the broker) wall times of the job, the second the first where the admission
        script itself put the job on the broker, and the seconds its prompt check took."""
        with self._lock:
            admitted = self.admitted.pop(job_id)
            return admitted, self.enqueued.pop(job_id, admitted), self.screened.pop(prompt, 0.0)


def _seconds(ts) -> float:
    return ts.ToNanoseconds() / 1e9


def time_service_job(client, prompt: str, probe: GatewayProbe | None = None, **fields: Any) -> ServiceTiming:
    """Generate one job through the gateway (the SDK's Generate stream) and time its stages."""
    wall0, t0 = time.time(), time.perf_counter()
    stamps: dict[str, float] = {}
    events, state, job_id = 0, "", ""
    for event in client.generate(prompt, **fields):
        events += 1
        job_id = event.job_id
        kind = event.WhichOneof("event")
        stamps.setdefault(kind, _seconds(event.time))
        if kind == "finished":
            state = types_pb2.JobState.Name(event.finished.state)
    total = time.perf_counter() - t0
    done = wall0 + total  # the receive time on the wall clock the events use
    queued, started, finished = stamps["queued"], stamps["started"], stamps["finished"]
    admitted, on_broker, screen = probe.take(job_id, prompt) if probe is not None else (queued, queued, 0.0)
    artifact = stamps.get("artifact", finished)
    stages = {
        "accept": queued - wall0 - screen,
        "screen": screen,
        "admit": admitted - queued,
        "enqueue": on_broker - admitted,
        "pickup": started - on_broker,
        "run": artifact - started,
        "finish": finished - artifact,
        "deliver": done - finished,
    }
    return ServiceTiming(total=total, stages=stages, events=events, state=state)


class _Recorder:
    """Where an in-process job reports (the pipeline's JobReporter protocol): the moments of its
    first step and of its first artifact, nothing else."""

    def __init__(self):
        self.first_step = self.last_step = self.artifact_at = None

    def check(self) -> None:
        pass

    def progress(self, steps_done: int, steps_total: int, images_done: int) -> None:
        if steps_done > 0 and images_done == 0:
            now = time.perf_counter()
            self.first_step = self.first_step or now
            self.last_step = now

    def preview(self, index: int, step: int, jpeg: bytes, width: int, height: int) -> None:
        pass

    def artifact(self, data: dict[str, Any], blob: bytes) -> None:
        self.artifact_at = self.artifact_at or time.perf_counter()


@dataclass(frozen=True)
class InProcessTiming:
    total: float
    stages: dict[str, float]


class InProcess:
    """The worker's pipeline on a runtime loaded here, called directly."""

    def __init__(self, settings, model: str):
        from services.worker.onnx_runtime import load_runtime

        started = time.perf_counter()
        self.runtime = load_runtime(settings, model)
        self.load_seconds = time.perf_counter() - started
        self.info = self.runtime.info

    def run(self, prompt: str, **kwargs) -> float:
        return self.timed(prompt, **kwargs).total

    def timed(self, prompt: str, *, seed: int, width: int = 0, height: int = 0, steps: int = 0,
              style: str = "") -> InProcessTiming:
        spec = JobSpec(prompts=(PromptSpec(prompt, style=style),), seeds=(seed,), width=width, height=height,
                       steps=steps)
        job = JobRecord(job_id="in-process", tenant="bench", spec=spec.with_(plan=resolve(spec, self.info)))
        recorder = _Recorder()
        started = time.perf_counter()
        # The runtime's own (unbatched) denoiser: the least a job can cost on this runtime.
        pipeline.generate(job, self.runtime, lambda tiling, shape: self.runtime.denoiser(tiling), recorder)
        ended = time.perf_counter()
        first, last = recorder.first_step or started, recorder.last_step or started
        artifact = recorder.artifact_at or ended
        return InProcessTiming(ended - started, {"first_step": first - started, "steps": last - first,
                                                 "to_artifact": artifact - last, "finish": ended - artifact})

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
