"""Why the gateway refuses a call, as plain exceptions; `services.gateway.status` maps them to gRPC."""

from __future__ import annotations

from services.common.store import JobNotFound

__all__ = ["InvalidRequest", "JobNotFound", "Overloaded", "PromptRefused", "Unauthenticated", "Unavailable"]


class InvalidRequest(ValueError):
    """Bad fields; `violations` lists every `(field, description)`."""

    def __init__(self, violations: list[tuple[str, str]]):
        self.violations = list(violations)
        super().__init__("; ".join(f"{f}: {d}" for f, d in self.violations))


class Overloaded(RuntimeError):
    """Over a tenant quota or a queue cap: try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float, reason: str):
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason  # bounded set, a metric label: tenant_in_flight, tenant_rate, queue_full


class Unavailable(ConnectionError):
    """Redis (the job store and the broker) does not answer: try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class PromptRefused(ValueError):
    """The tenant's content policy refuses the request's prompt (or every prompt of a bulk job):
    `concept` says which, never the words that matched."""

    def __init__(self, concept: str, policy: str, field: str):
        super().__init__(f"{field}: refused by the content policy {policy!r}: concept {concept!r}")
        self.concept, self.policy, self.field = concept, policy, field


class Unauthenticated(PermissionError):
    """No API key, or one the keys file does not hold."""
