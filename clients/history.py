"""Build a `ListJobsRequest` from plain Python values: state and kind names, datetimes or Unix seconds."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from atelier.v1 import generation_pb2 as gen
from atelier.v1 import types_pb2

STATES = tuple(n.removeprefix("JOB_STATE_").lower() for n in types_pb2.JobState.keys() if not n.endswith("UNSPECIFIED"))
KINDS = tuple(n.removeprefix("JOB_KIND_").lower() for n in types_pb2.JobKind.keys() if not n.endswith("UNSPECIFIED"))


def _value(enum, prefix: str, names: tuple[str, ...], what: str, value: str | int) -> int:
    if isinstance(value, int):
        return value
    name = value.strip().lower()
    if name not in names:
        raise ValueError(f"unknown job {what} {value!r}: one of {', '.join(names)}")
    return enum.Value(prefix + name.upper())


def state_value(state: str | int) -> int:
    """`atelier.v1.JobState` of "succeeded", "running", ... (or a number as it is)."""
    return _value(types_pb2.JobState, "JOB_STATE_", STATES, "state", state)


def kind_value(kind: str | int) -> int:
    """`atelier.v1.JobKind` of "txt2img", "upscale", ... (or a number as it is)."""
    return _value(types_pb2.JobKind, "JOB_KIND_", KINDS, "kind", kind)


def state_name(value: int) -> str:
    return types_pb2.JobState.Name(value).removeprefix("JOB_STATE_").lower()


def kind_name(value: int) -> str:
    """The kind's name; "-" for UNSPECIFIED and for a number this client does not know."""
    try:
        name = types_pb2.JobKind.Name(value)
    except ValueError:
        return "-"
    return "-" if value == types_pb2.JOB_KIND_UNSPECIFIED else name.removeprefix("JOB_KIND_").lower()


def build_list_request(
    *,
    states: Iterable[str | int] = (),
    kinds: Iterable[str | int] = (),
    created_after: datetime | float | None = None,
    created_before: datetime | float | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> gen.ListJobsRequest:
    """A ListJobs request; times are datetimes (naive ones are local time) or Unix seconds."""
    req = gen.ListJobsRequest(page_size=page_size, page_token=page_token,
                              states=[state_value(s) for s in states], kinds=[kind_value(k) for k in kinds])
    for name, when in (("created_after", created_after), ("created_before", created_before)):
        if when is not None:
            seconds = when.timestamp() if isinstance(when, datetime) else float(when)
            getattr(req, name).FromNanoseconds(int(round(seconds * 1e9)))
    return req


class Pages:
    """The requests of one paged ListJobs walk: the next page's until the last page, or until
    `limit` jobs have come (the last request then asks only for what is left)."""

    def __init__(self, request: gen.ListJobsRequest, limit: int | None = None):
        self.request, self.limit, self.received, self.done = request, limit, 0, False

    def next_request(self) -> gen.ListJobsRequest | None:
        if self.done or (self.limit is not None and self.received >= self.limit):
            return None
        if self.limit is not None:
            self.request.page_size = min(self.request.page_size or self.limit, self.limit - self.received)
        return self.request

    def jobs(self, page: gen.ListJobsResponse) -> list[gen.Job]:
        self.received += len(page.jobs)
        self.done = not page.next_page_token
        self.request.page_token = page.next_page_token
        return list(page.jobs)
