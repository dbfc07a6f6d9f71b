"""Each tenant's webhook endpoints and signing secrets: the webhooks file beside the API keys.

`webhooks.json` (`ATELIER_WEBHOOKS_FILE`, else beside `ATELIER_API_KEYS_FILE`) reads

    {"tenants": {"studio-a": {
        "secrets": [{"secret": "whsec_...", "created": "2026-12-04T17:00:00Z"}],   # newest first
        "endpoints": [{"id": "ep_...", "url": "https://...", "events": ["started", "finished"],
                       "progress_interval_seconds": 5}],
        "job_url_prefixes": ["https://hooks.studio-a.example/"]}}}

Unlike the keys file it holds secrets themselves (an HMAC needs them), so it is the operator's
to guard like any secret. Every secret listed signs every delivery: rotating is adding a new
secret, letting receivers learn it, then retiring the old ones (Standard Webhooks' overlap).
A job's own endpoint (GenerateRequest.webhook) must start with one of the tenant's
`job_url_prefixes`, so a tenant cannot make the service call an address the operator did not
allow. The file is re-read when it changes, by the gateway and the dispatcher alike.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as random_secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from services.common.events import EventKind
from services.common.watched_file import WatchedFile

SECRET_PREFIX = "whsec_"
# The job events a webhook can carry, in the order of the contract's WebhookEvent.
EVENTS = (EventKind.STARTED, EventKind.PROGRESS, EventKind.ARTIFACT, EventKind.FINISHED)
DEFAULT_EVENTS = (EventKind.STARTED, EventKind.ARTIFACT, EventKind.FINISHED)
DEFAULT_PROGRESS_INTERVAL_SECONDS = 5
MAX_PROGRESS_INTERVAL_SECONDS = 3600
MAX_URL_CHARS = 2048
JOB_ENDPOINT_ID = "job"  # the endpoint id of a job's own webhook


class WebhookConfigError(ValueError):
    """The webhooks file, or a value for it, is not what it must be."""


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and base64 of 32 random bytes (Standard Webhooks)."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookConfigError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError:
        raise WebhookConfigError("a webhook secret is whsec_ and base64") from None
    if len(key) < 24:
        raise WebhookConfigError("a webhook secret holds at least 24 bytes")
    return key


def check_url(url: str) -> str | None:
    """Why `url` cannot be a webhook endpoint, or None."""
    if len(url) > MAX_URL_CHARS:
        return f"at most {MAX_URL_CHARS} characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an http:// or https:// URL with a host"
    if parts.username or parts.password:
        return "a URL without credentials in it"
    return None


def check_events(events: tuple[str, ...]) -> str | None:
    unknown = [e for e in events if e not in EVENTS]
    return f"events are {', '.join(EVENTS)}, not {', '.join(unknown)}" if unknown else None


@dataclass(frozen=True)
class Endpoint:
    """Where a tenant's (or one job's) events go, and which."""

    id: str
    url: str
    events: tuple[str, ...] = DEFAULT_EVENTS
    progress_interval_seconds: int = DEFAULT_PROGRESS_INTERVAL_SECONDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(self.events))
        problem = check_url(self.url) or check_events(self.events)
        if problem:
            raise WebhookConfigError(f"endpoint {self.id!r}: {problem}")
        if not 0 < int(self.progress_interval_seconds) <= MAX_PROGRESS_INTERVAL_SECONDS:
            raise WebhookConfigError(f"endpoint {self.id!r}: progress_interval_seconds is 1 to "
                                     f"{MAX_PROGRESS_INTERVAL_SECONDS}")

    def wants(self, kind: str) -> bool:
        return kind in self.events


@dataclass(frozen=True)
class Secret:
    secret: str
    created: str = ""


@dataclass(frozen=True)
class TenantWebhooks:
    secrets: tuple[Secret, ...] = ()  # newest first; every one signs
    endpoints: tuple[Endpoint, ...] = ()
    job_url_prefixes: tuple[str, ...] = ()

    def allows_job_url(self, url: str) -> bool:
        return any(url.startswith(prefix) for prefix in self.job_url_prefixes)


@dataclass(frozen=True)
class WebhooksFile:
    tenants: dict[str, TenantWebhooks] = field(default_factory=dict)

    def tenant(self, name: str) -> TenantWebhooks:
        return self.tenants.get(name, TenantWebhooks())


def _tenant(name: str, data: dict) -> TenantWebhooks:
    secrets = tuple(Secret(**s) for s in data.get("secrets", []))
    for s in secrets:
        secret_key(s.secret)
    endpoints = tuple(Endpoint(**e) for e in data.get("endpoints", []))
    prefixes = tuple(data.get("job_url_prefixes", []))
    for prefix in prefixes:
        if check_url(prefix):
            raise WebhookConfigError(f"tenant {name!r}: job URL prefix {prefix!r} is not {check_url(prefix)}")
    if endpoints and not secrets:
        raise WebhookConfigError(f"tenant {name!r} has endpoints and no secret to sign with")
    return TenantWebhooks(secrets, endpoints, prefixes)


def read(path: Path) -> WebhooksFile:
    """The file's contents; a missing file configures no webhooks."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return WebhooksFile()
    except OSError as err:  # e.g. mode 600 and another owner than the service's user (docs/DEPLOY.md)
        raise WebhookConfigError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        data = json.loads(text)
        return WebhooksFile({name: _tenant(name, t) for name, t in data.get("tenants", {}).items()})
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise WebhookConfigError(f"{path}: not an Atelier webhooks file ({exc})") from None
    except WebhookConfigError as exc:
        raise WebhookConfigError(f"{path}: {exc}") from None


def write(path: Path, config: WebhooksFile) -> None:
    """Replace the file atomically, readable by its owner only (it holds secrets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tenants = {name: {"secrets": [asdict(s) for s in t.secrets],
                      "endpoints": [{**asdict(e), "events": list(e.events)} for e in t.endpoints],
                      "job_url_prefixes": list(t.job_url_prefixes)} for name, t in config.tenants.items()}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"tenants": tenants}, indent=2) + "\n")
    os.replace(tmp, path)


def file_of(webhooks_file: Path | None, api_keys_file: Path | None) -> Path | None:
    """The webhooks file a service reads: the setting, else `webhooks.json` beside the keys file."""
    if webhooks_file is not None:
        return Path(webhooks_file)
    return Path(api_keys_file).with_name("webhooks.json") if api_keys_file is not None else None


class Webhooks:
    """The webhooks file as it is now, re-read when it changes (like the keys file); a half-edited
    file keeps the webhooks read before."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self._file: WatchedFile[WebhooksFile] = WatchedFile(self.path, read, WebhooksFile(),
                                                            keep_on=(WebhookConfigError,))

    def current(self) -> WebhooksFile:
        return self._file.current()

    def tenant(self, name: str) -> TenantWebhooks:
        return self.current().tenant(name)


# --- the operator's edits (`atelier webhooks ...`)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _edit(path: Path, tenant: str, change) -> TenantWebhooks:
    if not tenant or len(tenant) > 128:
        raise WebhookConfigError("a tenant name of 1 to 128 characters is needed")
    config = read(path)
    updated = change(config.tenant(tenant))
    write(path, WebhooksFile({**config.tenants, tenant: updated}))
    return updated


def _signing(t: TenantWebhooks, created: list[str]) -> tuple[Secret, ...]:
    """The tenant's secrets, or a first one (appended to `created`) when it has none."""
    if t.secrets:
        return t.secrets
    created.append(new_secret())
    return (Secret(created[-1], _now()),)


def add_endpoint(path: Path, tenant: str, url: str, events: tuple[str, ...] = DEFAULT_EVENTS,
                 progress_interval_seconds: int = DEFAULT_PROGRESS_INTERVAL_SECONDS) -> tuple[Endpoint, str | None]:
    """Add an endpoint; (the endpoint, the tenant's new secret if it had none, shown once)."""
    endpoint = Endpoint("ep_" + random_secrets.token_hex(6), url, tuple(events), progress_interval_seconds)
    created: list[str] = []

    def change(t: TenantWebhooks) -> TenantWebhooks:
        return TenantWebhooks(_signing(t, created), (*t.endpoints, endpoint), t.job_url_prefixes)

    _edit(path, tenant, change)
    return endpoint, (created[0] if created else None)


def remove_endpoint(path: Path, endpoint_id: str) -> bool:
    config = read(path)
    for name, t in config.tenants.items():
        kept = tuple(e for e in t.endpoints if e.id != endpoint_id)
        if len(kept) != len(t.endpoints):
            write(path, WebhooksFile({**config.tenants, name: TenantWebhooks(t.secrets, kept, t.job_url_prefixes)}))
            return True
    return False


def rotate_secret(path: Path, tenant: str) -> str:
    """Add a new secret before the others (all of them sign until retired); returns it."""
    secret = new_secret()
    _edit(path, tenant, lambda t: TenantWebhooks((Secret(secret, _now()), *t.secrets), t.endpoints,
                                                 t.job_url_prefixes))
    return secret


def retire_secrets(path: Path, tenant: str) -> int:
    """Keep only the newest secret; returns how many were retired."""
    before = read(path).tenant(tenant).secrets
    _edit(path, tenant, lambda t: TenantWebhooks(t.secrets[:1], t.endpoints, t.job_url_prefixes))
    return max(0, len(before) - 1)


def allow_job_urls(path: Path, tenant: str, prefix: str) -> str | None:
    """Let the tenant's jobs name their own endpoint under `prefix`; the tenant's new secret if it had none."""
    problem = check_url(prefix)
    if problem:
        raise WebhookConfigError(f"job URL prefix {prefix!r}: {problem}")
    created: list[str] = []

    def change(t: TenantWebhooks) -> TenantWebhooks:
        prefixes = t.job_url_prefixes if prefix in t.job_url_prefixes else (*t.job_url_prefixes, prefix)
        return TenantWebhooks(_signing(t, created), t.endpoints, prefixes)

    _edit(path, tenant, change)
    return created[0] if created else None
