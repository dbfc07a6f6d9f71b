"""Prometheus metrics of the webhook dispatcher (docs/ARCHITECTURE.md, Contracts: metrics): no
tenant, job or endpoint labels."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("atelier_webhook_deliveries_total", "Webhook deliveries an endpoint accepted (2xx), by event.",
                     ["event"])
FAILURES = Counter("atelier_webhook_delivery_failures_total",
                   "Webhook delivery attempts that failed, by reason (status, timeout, connection).", ["reason"])
DEAD_LETTERS = Counter("atelier_webhook_dead_letters_total",
                       "Webhook deliveries given up after ATELIER_WEBHOOK_MAX_ATTEMPTS attempts.")
SCHEDULED = Counter("atelier_webhook_events_scheduled_total", "Deliveries scheduled from job events, by event.",
                    ["event"])
ATTEMPT_SECONDS = Histogram("atelier_webhook_attempt_seconds", "Time of one delivery attempt, answered or not.",
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PENDING = Gauge("atelier_webhook_pending_deliveries", "Deliveries scheduled and not yet accepted or dead.")
FOLLOWED = Gauge("atelier_webhook_jobs_followed", "Jobs whose events the dispatcher is following.")
