"""What a job costs, and how long it will take: the one place ETAs are computed.

A job's work is its denoiser evaluations (NFE: Heun's corrector makes it 2 x steps - 1, an
img2img strength runs only the schedule's tail) times its rows (images x 2 under
classifier-free guidance, which evaluates the unconditional prompt too). Its time is that
work times the seconds one row costs on the model at the job's size, plus the job's fixed
part (text encoding, decoding, encoding and storing its images). A UNet's cost grows with
its latent pixels (convolutions linearly, attention faster), so a per-row time measured at
32² says little about 128² (a 512² job once told 1 s took 172 s).

Workers measure every job they finish (:class:`RowTimes`): the per-row time is its sampling
time over its NFE x rows, the fixed part the rest of its wall time; both per model and size,
published with their heartbeat (services.common.readiness). Keeping the fixed part apart
matters: folded into the per-row time it would make a 40-step job's estimate too long and a
Heun job's (twice the evaluations, the same fixed part) too short. A job that upscales costs
two parts (:func:`parts`): its base model's sampling, and its upscaler's network calls at the
output size (an UPSCALE job: only the latter), each measured and estimated under its own model. The gateway's queued ETA
and the worker's progress ETA both come from :func:`estimate_seconds`. Sizes are keyed by
image pixels: for one model the latent pixels are the image pixels over a fixed factor², so
a fit in one is a fit in the other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.common.plan import JobKind, JobPlan

# Before any worker measured a model: 25 ms a row at 32² (a step of one guided 32² image
# on a CPU worker, ~0.05 s), scaled with the pixels.
DEFAULT_ROW_SECONDS_PER_PIXEL = 0.025 / (32 * 32)
# Weight of a new measurement in a size's running mean: recent jobs count most (the machine's
# load changes), one slow job does not swing the estimate.
NEW_MEASUREMENT_WEIGHT = 0.5

# model key ("name/version") -> size ("WxH") -> {"row": seconds per row-evaluation,
# "fixed": seconds of the job outside sampling}
Measurements = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class JobCost:
    """A job's work in plain numbers, as a plan or a request states it."""

    nfe: int  # denoiser evaluations per row
    rows: int  # rows of every evaluation: images x (2 with classifier-free guidance)
    width: int
    height: int
    model: str  # "name/version"

    @property
    def row_evaluations(self) -> int:
        return self.nfe * self.rows


def of_plan(plan: JobPlan, images: int | None = None) -> JobCost:
    """The base model's cost of a planned job, or of `images` of its images (those an attempt has left to make)."""
    images = plan.images_total if images is None else images
    return JobCost(plan.nfe, images * (2 if plan.guided else 1), plan.width, plan.height,
                   f"{plan.model}/{plan.model_version}")


def of_upscale(plan: JobPlan, images: int | None = None) -> JobCost | None:
    """The upscaler's cost of a planned job (None: it does not upscale): one row per image at the
    output size, so an upload cut into tiles costs its pixels, as a tile row's time is fitted by pixels."""
    if plan.upscale is None:
        return None
    images = plan.images_total if images is None else images
    u = plan.upscale
    return JobCost(u.nfe, images, plan.output_width, plan.output_height, f"{u.model}/{u.version}")


def parts(plan: JobPlan, images: int | None = None) -> tuple[JobCost, ...]:
    """What a job costs, stage by stage: its base model's sampling (none for an UPSCALE job), then its upscaler's."""
    found = [] if plan.kind == JobKind.UPSCALE else [of_plan(plan, images)]
    upscale = of_upscale(plan, images)
    return (*found, upscale) if upscale is not None else tuple(found)


def estimate_plan(plan: JobPlan, measured: Measurements, images: int | None = None) -> float:
    """How long a planned job (or `images` of its images) takes: the sum of its parts."""
    return sum(estimate(part, measured) for part in parts(plan, images))


def size_key(width: int, height: int) -> str:
    return f"{width}x{height}"


def _pixels(key: str) -> int:
    w, h = key.split("x")
    return int(w) * int(h)


def row_seconds(model: str, width: int, height: int, measured: Measurements) -> float:
    """Seconds one row of `model` costs at width x height, from what workers measured.

    The size itself when measured; otherwise a straight line t = a + b x pixels fitted by
    least squares on the model's measured sizes (a: per-row work that does not grow with the
    image, b: work per pixel; both kept >= 0); one measured size only: scaled by pixels (a
    compute-bound guess, too long rather than too short for larger sizes); none: the default.
    """
    sizes = measured.get(model, {})
    key = size_key(width, height)
    if key in sizes:
        return sizes[key]["row"]
    pixels = width * height
    points = [(_pixels(k), m["row"]) for k, m in sizes.items() if m["row"] > 0]
    if not points:
        return DEFAULT_ROW_SECONDS_PER_PIXEL * pixels
    if len({p for p, _ in points}) == 1:
        p0, t0 = points[0]
        return t0 * pixels / p0
    n = len(points)
    mean_p = sum(p for p, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    slope = sum((p - mean_p) * (t - mean_t) for p, t in points) / sum((p - mean_p) ** 2 for p, _ in points)
    slope = max(0.0, slope)
    intercept = max(0.0, mean_t - slope * mean_p)
    return intercept + slope * pixels


def fixed_seconds(model: str, width: int, height: int, measured: Measurements) -> float:
    """A job's time outside sampling: as measured at its size, else the mean of the model's sizes."""
    sizes = measured.get(model, {})
    key = size_key(width, height)
    if key in sizes:
        return sizes[key]["fixed"]
    known = [m["fixed"] for m in sizes.values()]
    return sum(known) / len(known) if known else 0.0


def estimate_seconds(nfe: int, rows: int, width: int, height: int, model: str, measured: Measurements) -> float:
    """How long a job of `nfe` evaluations of `rows` rows at width x height takes on `model`."""
    sampling = max(nfe, 0) * max(rows, 1) * row_seconds(model, width, height, measured)
    return fixed_seconds(model, width, height, measured) + sampling


def estimate(cost: JobCost, measured: Measurements) -> float:
    return estimate_seconds(cost.nfe, cost.rows, cost.width, cost.height, cost.model, measured)


def merge(each: Iterable[Measurements]) -> dict[str, dict[str, dict[str, float]]]:
    """Several workers' measurements as one: the mean per model, size and part."""
    found: dict[str, dict[str, list[Mapping[str, float]]]] = {}
    for measured in each:
        for model, sizes in measured.items():
            for key, parts in sizes.items():
                found.setdefault(model, {}).setdefault(key, []).append(parts)
    return {model: {key: {part: sum(p[part] for p in all_parts) / len(all_parts) for part in ("row", "fixed")}
                    for key, all_parts in sizes.items()}
            for model, sizes in found.items()}


def remaining_seconds(elapsed: float, done: int, total: int, planned: float) -> float:
    """A running job's ETA: before its first step, the estimate it was planned with; after,
    its own pace (elapsed / steps done x steps left), which has seen this machine's load."""
    if done <= 0:
        return max(0.0, planned)
    return elapsed / done * max(0, total - done)


class RowTimes:
    """A worker's measurements, per model and size (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, dict[str, dict[str, float]]] = {}

    def record(self, cost: JobCost, seconds: float, sampling_seconds: float) -> None:
        """A job of `cost` took `seconds` of wall time, `sampling_seconds` of them in its sampler."""
        if cost.row_evaluations <= 0 or not 0 < sampling_seconds <= seconds:
            return
        new = {"row": sampling_seconds / cost.row_evaluations, "fixed": seconds - sampling_seconds}
        key = size_key(cost.width, cost.height)
        with self._lock:
            sizes = self._seconds.setdefault(cost.model, {})
            old = sizes.get(key)
            sizes[key] = new if old is None else {
                part: old[part] + NEW_MEASUREMENT_WEIGHT * (new[part] - old[part]) for part in new}

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        with self._lock:
            return {m: {k: dict(parts) for k, parts in sizes.items()} for m, sizes in self._seconds.items()}
