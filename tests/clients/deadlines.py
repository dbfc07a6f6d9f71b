"""Deadlines for the clients' blocking calls (streams, in-process commands) that take no timeout
of their own: a stuck call fails its test in seconds instead of hanging the suite."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import pytest

T = TypeVar("T")

SCRIPTED_SECONDS = 20.0  # a job of the scripted stand-in worker takes milliseconds


def call_within(fn: Callable[[], T], seconds: float = SCRIPTED_SECONDS,
                what: Callable[[], str] = lambda: "the call") -> T:
    """`fn()`, run in a helper thread; the test fails, saying `what()`, if it has not returned
    within `seconds`."""
    results: list = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(fn())
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(err)

    runner = threading.Thread(target=run, name="deadline", daemon=True)
    runner.start()
    runner.join(seconds)
    if runner.is_alive():
        pytest.fail(f"{what()} had not finished after {seconds:.0f} s")
    if errors:
        raise errors[0]
    return results[0]


def within(stream: Iterable[T], seconds: float = SCRIPTED_SECONDS) -> list[T]:
    """Every item of a blocking stream; the test fails if the stream has not ended within `seconds`."""
    items: list[T] = []

    def drain() -> list[T]:
        for item in stream:
            items.append(item)
        return items

    return call_within(drain, seconds, what=lambda: f"the stream (at {len(items)} items)")
