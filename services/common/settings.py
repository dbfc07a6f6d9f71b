"""Every setting of Atelier's services, read from `ATELIER_*` environment variables.

One frozen dataclass; each field documents itself (`env`, `doc` metadata) so that
`docs/CONFIGURATION.md` and `atelier ... --help` say exactly what the code reads, and a
test checks the document against this module.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.policy.policies import DEFAULT_RULES_TEXT, PolicyError, default_policy


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _setting(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    # --- connections
    redis_url: str = _setting("redis://127.0.0.1:6379/0", "Redis for the Celery broker, job records and event streams.")
    key_prefix: str = _setting("atelier:", "Prefix of every Redis key Atelier writes (not Celery's own queues).")
    grpc_listen: str = _setting(
        "127.0.0.1:50051",
        "Address the gRPC gateway listens on (`0.0.0.0:50051` in containers).",
    )
    http_listen: str = _setting(
        "",
        "Address of the gateway's HTTP/JSON API and playground page (`0.0.0.0:8080` in containers; empty: off).",
    )
    gateway_metrics_port: int = _setting(9464, "Prometheus metrics port of the gateway (0: off).")
    worker_metrics_port: int = _setting(9465, "Prometheus metrics port of a worker (0: off).")
    # --- models
    model_repository: Path = _setting(
        Path("models"),
        "Folder of the model repository (`<name>/<version>/manifest.json`).",
    )
    default_model: str = _setting("atelier-emoji", "Model used when a request names none.")
    default_upscaler: str = _setting("atelier-upscale", "Upscaler used when a request upscales and names none.")
    concept_classifier: str = _setting(
        "atelier-concepts",
        "Output concept classifier whose newest version checks every image of a job whose content policy blocks "
        "one of its concepts (empty: no output check).",
    )
    execution_providers: str = _setting(
        "auto",
        "ONNX Runtime providers in order, comma-separated, or `auto` (TensorRT, CUDA, CPU as really usable).",
    )
    runtime_loader: str = _setting(
        "services.worker.onnx_runtime:load_runtime",
        "`module:function` that loads a model version for a worker: `load(settings, model, version)`.",
    )
    trt_engine_cache: Path = _setting(Path(".cache/trt"), "Folder of TensorRT engine caches.")
    onnx_variant: str = _setting(
        "auto",
        "Model files a worker runs: `auto` (CPU: `optimized`, CUDA: `fp16`, TensorRT: `default`), or a variant name.",
    )
    onnx_intra_op_threads: int = _setting(0, "ONNX Runtime threads per operator (0: one per physical core).")
    text_cache_size: int = _setting(1024, "Prompts whose text-encoder states a worker keeps (LRU).")
    # --- security
    api_keys_file: Path | None = _setting(
        None,
        "JSON file of hashed API keys and their tenants; unset: no keys accepted.",
    )
    content_policy: str = _setting(
        DEFAULT_RULES_TEXT,
        "Default content policy, `concept[=REFUSE|DROP]` comma-separated (docs/API.md, \"Content policy\"); "
        "a tenant's own policy in the keys file changes it.",
    )
    tls_cert: Path | None = _setting(None, "PEM certificate chain of the gateway; set with `tls_key` to serve TLS.")
    tls_key: Path | None = _setting(None, "PEM private key of the gateway.")
    tls_client_ca: Path | None = _setting(None, "PEM CA bundle; when set, clients must present a certificate (mTLS).")
    signing_cert_chain: Path | None = _setting(
        None, "PEM certificate chain (the leaf first) that signs every image's content credentials (C2PA); set with "
        "`signing_key`. Unset: each worker makes a development chain of its own at start (`atelier up` makes one "
        "it keeps); production mounts both from a secret (docs/DEPLOY.md)."
    )
    signing_key: Path | None = _setting(None, "PEM private key (ES256, P-256) of `signing_cert_chain`.")
    image_record_retention_days: int = _setting(
        90, "How long each delivered image's fingerprint (sha256, perceptual hash) and provenance are kept for "
        "LookupImage (\"was this made here?\"), per tenant."
    )
    # --- request limits
    max_side: int = _setting(1024, "Largest width or height of a generated image, in pixels.")
    max_steps: int = _setting(150, "Most sampler steps a request may ask for.")
    max_guidance_scale: float = _setting(30.0, "Largest classifier-free guidance scale.")
    max_prompt_chars: int = _setting(2000, "Longest prompt or negative prompt, in characters.")
    max_images_per_job: int = _setting(64, "Most images one job may produce (seeds x prompts).")
    max_bulk_prompts: int = _setting(1000, "Most prompts in one bulk job.")
    max_upload_bytes: int = _setting(8 * 1024 * 1024, "Largest init image or mask, in bytes.")
    max_upload_pixels: int = _setting(
        4096 * 4096,
        "Largest init image or mask in pixels, read from the header before decoding.",
    )
    max_dataset_images: int = _setting(100_000, "Most images one dataset job may produce (prompts x styles x seeds).")
    max_dataset_prompts: int = _setting(20_000, "Most prompts in one dataset job, before they are crossed with styles.")
    # --- datasets (docs/API.md, "Dataset jobs")
    dataset_dir: Path = _setting(
        Path("datasets"),
        "Folder in which dataset jobs write the folders they name (a volume in compose and Kubernetes).",
    )
    dataset_s3_endpoint: str = _setting(
        "", "S3-compatible endpoint URL of `s3://` datasets (empty: AWS); credentials from boto3's usual sources "
        "(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, a profile)."
    )
    dataset_s3_region: str = _setting("", "Region of `s3://` datasets (empty: boto3's default).")
    dataset_chunks_in_flight: int = _setting(
        4, "Chunks (of up to ATELIER_MAX_BATCH rows) a dataset job samples at once: one decodes and encodes while "
        "the others sample, and the batching denoiser stacks their rows."
    )
    # --- admission
    tenant_max_jobs_in_flight: int = _setting(64, "Jobs one tenant may have queued or running at once.")
    tenant_jobs_per_minute: int = _setting(600, "Jobs one tenant may submit per minute.")
    max_queue_depth_interactive: int = _setting(
        1000,
        "Queued interactive jobs beyond which Submit answers RESOURCE_EXHAUSTED.",
    )
    max_queue_depth_batch: int = _setting(100_000, "Queued batch jobs beyond which Submit answers RESOURCE_EXHAUSTED.")
    # --- jobs and workers
    result_ttl_seconds: int = _setting(24 * 3600, "How long job records, events and images are kept after a job ends.")
    worker_concurrency: int = _setting(8, "Jobs one worker samples at once (its thread pool size).")
    max_batch: int = _setting(16, "Most rows in one denoiser call of the batching denoiser.")
    batch_wait_ms: float = _setting(6.0, "How long the batching denoiser waits for more rows before a call.")
    batching: str = _setting(
        "auto", "Step-level batching of each model's denoiser calls: `on`, `off`, or `auto` (measured when the model "
        "loads: on only where one call of all jobs' rows is at least as fast as their own calls side by side); a "
        "default and `model=mode` entries, comma-separated, e.g. `auto,atelier-upscale=off`."
    )
    task_soft_time_limit: int = _setting(600, "Seconds after which a job is stopped and fails with a timeout.")
    task_time_limit: int = _setting(660, "Seconds after which the worker process running a job is killed.")
    visibility_timeout: int = _setting(
        3600,
        "Seconds before an unacknowledged job is redelivered; above task_time_limit.",
    )
    job_lease_seconds: float = _setting(
        6.0, "How long a worker's hold on a job lasts unrenewed (it renews every third of it): a job whose worker "
        "died goes back to its queue this long after the last renewal (docs/RELIABILITY.md)."
    )
    preview_size: int = _setting(64, "Longest side of preview images, in pixels.")
    progress_interval_ms: int = _setting(
        100, "Least time between two progress events of one job, and between two checks in Redis that the job is "
        "still this worker's (cancellations arrive at once by pub/sub)."
    )
    # --- gateway
    outbox_grace_seconds: float = _setting(
        30.0, "Age at which a stored job that no gateway handed to the broker is sent by the outbox sweeper."
    )
    shutdown_grace_seconds: float = _setting(10.0, "Time open streams get to finish when the gateway stops.")
    gateway_threads: int = _setting(
        64, "Threads of the gateway for unary calls (Submit, GetJob, CancelJob, ListModels, health checks); open "
        "streams have threads of their own, so they never take these."
    )
    gateway_max_streams: int = _setting(
        256, "Open streams (Generate, Watch, Health.Watch) one gateway holds at once, each on a thread of its own; "
        "beyond: RESOURCE_EXHAUSTED with a retry delay."
    )
    tenant_max_streams: int = _setting(
        64, "Open streams one tenant may hold on one gateway (calls without an API key share one such allowance); "
        "beyond: RESOURCE_EXHAUSTED with a retry delay."
    )
    # --- webhooks (docs/API.md, "Webhooks")
    webhooks_file: Path | None = _setting(
        None, "JSON file of each tenant's webhook endpoints and signing secrets; unset: `webhooks.json` beside "
        "the API keys file (no webhooks without either)."
    )
    webhooks_metrics_port: int = _setting(9466, "Prometheus metrics port of the webhook dispatcher (0: off).")
    webhook_timeout_seconds: float = _setting(
        10.0, "How long the dispatcher waits for an endpoint to answer one delivery before counting it failed."
    )
    webhook_max_attempts: int = _setting(
        10, "Attempts of one delivery before it becomes a dead letter (`atelier webhooks dead-letters`)."
    )
    webhook_retry_base_seconds: float = _setting(
        10.0, "Wait after a delivery's first failed attempt; each further failure doubles it, and every wait is "
        "drawn at random from half to all of its value (jitter)."
    )
    webhook_retry_max_seconds: float = _setting(3600.0, "Longest wait between two attempts of one delivery.")
    webhook_concurrency: int = _setting(8, "Deliveries one dispatcher sends at once.")
    webhook_max_inline_image_bytes: int = _setting(
        256 * 1024, "Largest image an `artifact` webhook carries inline (base64); larger ones are left to Watch."
    )
    log_level: str = _setting("INFO", "Python logging level.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `ATELIER_<FIELD>` variables; keyword overrides win over both."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            if name in environ and environ[name] != "":
                values[f.name] = _parse(name, environ[name], f.type)
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def to_env(self) -> dict[str, str]:
        """The `ATELIER_<FIELD>` variables that `from_env` reads back as these settings (unset
        fields are left out): how a parent process hands its settings to a child it starts."""
        return {env_name(f.name): str(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    def check(self) -> None:
        """Reject settings that contradict each other."""
        if self.visibility_timeout <= self.task_time_limit:
            raise SettingsError(
                f"{env_name('visibility_timeout')}={self.visibility_timeout} must exceed "
                f"{env_name('task_time_limit')}={self.task_time_limit}, or a slow job is redelivered while it runs"
            )
        if self.task_soft_time_limit >= self.task_time_limit:
            raise SettingsError(
                f"{env_name('task_soft_time_limit')} must be below {env_name('task_time_limit')}"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError(f"set both {env_name('tls_cert')} and {env_name('tls_key')}, or neither")
        if (self.signing_cert_chain is None) != (self.signing_key is None):
            raise SettingsError(f"set both {env_name('signing_cert_chain')} and {env_name('signing_key')}, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise SettingsError(f"{env_name('tls_client_ca')} needs {env_name('tls_cert')} and {env_name('tls_key')}")
        batching_modes(self.batching)
        try:
            default_policy(self.content_policy)
        except PolicyError as exc:
            raise SettingsError(f"{env_name('content_policy')}: {exc}") from None
        for name in ("webhook_timeout_seconds", "webhook_retry_base_seconds", "webhook_retry_max_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{env_name(name)} must be positive")
        if self.job_lease_seconds <= 0:
            raise SettingsError(f"{env_name('job_lease_seconds')} must be positive")
        for name in ("max_batch", "worker_concurrency", "max_side", "max_steps", "max_images_per_job",
                     "max_dataset_images", "max_dataset_prompts", "dataset_chunks_in_flight",
                     "gateway_threads", "gateway_max_streams", "tenant_max_streams",
                     "image_record_retention_days", "webhook_max_attempts",
                     "webhook_concurrency"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{env_name(name)} must be at least 1")


BATCHING_ON, BATCHING_OFF, BATCHING_AUTO = "on", "off", "auto"
BATCHING_MODES = (BATCHING_ON, BATCHING_OFF, BATCHING_AUTO)


def batching_modes(text: str) -> dict[str, str]:
    """`ATELIER_BATCHING` as {model: mode}, the default under "*" (`auto` when none is given)."""
    modes = {"*": BATCHING_AUTO}
    for entry in (e.strip() for e in str(text).split(",")):
        if not entry:
            continue
        model, _, mode = entry.rpartition("=")
        model, mode = model.strip(), mode.strip().lower()
        if mode not in BATCHING_MODES or (_ and not model):
            raise SettingsError(f"{env_name('batching')}: {entry!r} is not a mode ({', '.join(BATCHING_MODES)}) "
                                "or model=mode")
        modes[model or "*"] = mode
    return modes


def batching_mode(text: str, model: str) -> str:
    """The batching mode `ATELIER_BATCHING` gives the model named `model`."""
    modes = batching_modes(text)
    return modes.get(model, modes["*"])


def env_name(field_name: str) -> str:
    return "ATELIER_" + field_name.upper()


def _parse(name: str, raw: str, type_: Any) -> Any:
    text = str(type_)
    try:
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
        if "Path" in text:
            return Path(raw)
        return raw
    except ValueError:
        kind = "an integer" if text == "int" else "a number"
        raise SettingsError(f"{name}={raw!r} is not {kind}") from None


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, in declaration order."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = "unset" if f.default is None else str(f.default)
        rows.append((env_name(f.name), default, f.metadata["doc"]))
    return rows


def markdown_table() -> str:
    """The table of docs/CONFIGURATION.md (`python -m services.common.settings` prints it)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, default, doc in describe():
        lines.append(f"| `{name}` | `{default}` | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
