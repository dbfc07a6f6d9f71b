"""A request's own webhook (GenerateRequest.webhook) and what a job's record says about webhooks.

A job's events go to webhooks when its tenant has endpoints in the webhooks file or the request
names one; the record then carries the `webhooks` field (services/webhooks/fanout.py), which
makes the admission script follow the job. A request's endpoint must start with one of the
tenant's `job_url_prefixes` (services/common/webhooks/config.py): the operator decides where
the service may call.
"""

from __future__ import annotations

from atelier.v1 import generation_pb2
from services.common.webhooks.config import (
    DEFAULT_EVENTS,
    DEFAULT_PROGRESS_INTERVAL_SECONDS,
    EVENTS,
    JOB_ENDPOINT_ID,
    MAX_PROGRESS_INTERVAL_SECONDS,
    Endpoint,
    TenantWebhooks,
    WebhookConfigError,
    check_url,
)
from services.gateway.limits import Violation

JobWebhook = generation_pb2.JobWebhook

# WebhookEvent number -> event kind (WEBHOOK_EVENT_STARTED = 1 ... in the order of EVENTS)
_EVENTS = {number: kind for number, kind in enumerate(EVENTS, start=1)}


def requested(request: generation_pb2.GenerateRequest) -> tuple[JobWebhook | None, list[Violation]]:
    """The request's webhook, and what is wrong with it regardless of the tenant."""
    if not request.HasField("webhook"):
        return None, []
    hook, out = request.webhook, []
    problem = check_url(hook.url)
    if problem:
        out.append(("webhook.url", f"must be {problem}"))
    for i, number in enumerate(hook.events):
        if number not in _EVENTS:
            out.append((f"webhook.events[{i}]", f"must be one of WEBHOOK_EVENT_{{{', '.join(EVENTS).upper()}}}"))
    if hook.progress_interval_seconds > MAX_PROGRESS_INTERVAL_SECONDS:
        out.append(("webhook.progress_interval_seconds", f"must be at most {MAX_PROGRESS_INTERVAL_SECONDS}"))
    return hook, out


def endpoint_for(hook: JobWebhook | None, tenant: TenantWebhooks) -> tuple[Endpoint | None, list[Violation]]:
    """The job's own endpoint, checked against what the operator allows the tenant."""
    if hook is None or check_url(hook.url):
        return None, []  # requested() has named a bad url
    if not tenant.job_url_prefixes:
        return None, [("webhook", "this tenant may not name its own webhook endpoints (the operator allows URL "
                                  "prefixes with `atelier webhooks allow-job-urls`)")]
    if not tenant.allows_job_url(hook.url):
        return None, [("webhook.url", f"must start with one of {', '.join(tenant.job_url_prefixes)}")]
    events = tuple(dict.fromkeys(_EVENTS[n] for n in hook.events if n in _EVENTS)) or DEFAULT_EVENTS
    try:
        return Endpoint(JOB_ENDPOINT_ID, hook.url, events,
                        hook.progress_interval_seconds or DEFAULT_PROGRESS_INTERVAL_SECONDS), []
    except WebhookConfigError:
        return None, []  # requested() has named what is wrong with it


def wanted(tenant: TenantWebhooks, endpoint: Endpoint | None) -> bool:
    """Whether the job's events go to any webhook."""
    return bool(tenant.endpoints) or endpoint is not None
