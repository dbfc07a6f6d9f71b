"""Prometheus metrics of the job path (docs/ARCHITECTURE.md, Contracts: metrics).

Names start with `atelier_`, carry base units, counters end in `_total`; labels are
bounded sets (queue, outcome, model, sampler), never tenant or job ids. The gateway
owns the RPC metrics; everything here is recorded by workers (and read by anyone
through the default registry).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.queues import queue_depth

# Seconds from 10 ms to ~20 min: interactive jobs land in the low buckets, batch jobs high.
_JOB_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200)
_CALL_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_BATCH_ROWS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)

JOBS = Counter("atelier_jobs_total", "Jobs that reached a final state, by outcome.", ["outcome"])
QUEUE_WAIT = Histogram(
    "atelier_job_queue_seconds", "Time a job waited from submission to its start.", ["queue"], buckets=_JOB_SECONDS
)
JOB_LATENCY = Histogram(
    "atelier_job_latency_seconds",
    "End-to-end time from submission to a final state.",
    ["queue", "outcome"],
    buckets=_JOB_SECONDS,
)
SAMPLING = Histogram(
    "atelier_sampling_seconds", "Time spent in the sampler loop of one job.", ["model"], buckets=_JOB_SECONDS
)
STEPS = Counter("atelier_sampler_steps_total", "Sampler steps run, summed over images.", ["model", "sampler"])
IMAGES = Counter("atelier_images_total", "Images produced.", ["model"])
DENOISER_BATCH = Histogram(
    "atelier_denoiser_batch_rows", "Rows in one call of a batching denoiser.", ["model"], buckets=_BATCH_ROWS
)
DENOISER_CALL = Histogram(
    "atelier_denoiser_call_seconds", "Duration of one underlying denoiser call.", ["model"], buckets=_CALL_SECONDS
)
MODEL_LOAD = Histogram(
    "atelier_model_load_seconds",
    "Time to load and warm up one model version.",
    ["model"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
# The output check's share of the gateway's counter of the same name and labels (services/gateway/metrics.py
# counts check=PROMPT): the tenant label is the one exception there too, tenants being the keys file's.
POLICY_DECISIONS = Counter(
    "atelier_policy_decisions_total",
    "Prompts (check=PROMPT) and images (check=OUTPUT) a content policy filtered, by concept, action and tenant.",
    ["concept", "action", "check", "tenant"],
)
BUSY_SLOTS = Gauge("atelier_worker_busy_slots", "Jobs this worker is running now.")
SLOTS = Gauge("atelier_worker_slots", "Jobs this worker can run at once.")


class QueueDepthCollector(Collector):
    """`atelier_queue_depth{queue}`: messages waiting in each Celery queue, read at scrape time.

    Celery's Redis transport keeps a queue as a list named after it (plus one list per
    priority step, `<queue>\\x06\\x16<n>`); their lengths summed are the depth.
    """

    def __init__(self, client, queues: Iterable[str], priority_steps: Iterable[int] = (0, 3, 6, 9)):
        self.client = client
        self.queues = tuple(queues)
        self.priority_steps = tuple(priority_steps)

    def depth(self, queue: str) -> int:
        return queue_depth(self.client, queue, self.priority_steps)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("atelier_queue_depth", "Jobs waiting in each queue.", labels=["queue"])
        for queue in self.queues:
            try:
                family.add_metric([queue], self.depth(queue))
            except Exception:  # noqa: BLE001 - a scrape must not fail because Redis blinked
                continue
        yield family


def record_outcome(outcome: str, queue: str, latency_seconds: float) -> None:
    JOBS.labels(outcome=outcome.lower()).inc()
    JOB_LATENCY.labels(queue=queue, outcome=outcome.lower()).observe(max(0.0, latency_seconds))


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Expose `registry` on http://0.0.0.0:`port`/metrics (port 0: do nothing)."""
    if port:
        start_http_server(port, registry=registry)
