"""Shared fixtures: a real Redis for every test that asks for one."""

from __future__ import annotations

import signal
import sys

import pytest
import redis as redis_lib

from tests.redis_harness import RedisServer, redis_server


def pytest_configure(config):
    # A shell starts a background job (`make test &`, nohup) with SIGINT ignored, and every process
    # the suite starts would inherit that: the tests that press Ctrl-C on a CLI would see it hang on.
    # Python's own handler here makes the children start with the default again (a caught signal
    # is reset on exec; an ignored one is not).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def redis_instance() -> RedisServer:
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_url(redis_instance: RedisServer) -> str:
    """URL of an empty Redis database owned by this test."""
    client = redis_lib.Redis.from_url(redis_instance.url)
    client.flushdb()
    client.close()
    return redis_instance.url


@pytest.fixture
def redis_client(redis_url: str):
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _denormals_restored():
    """Training code flushes denormals to zero (torch.set_flush_denormal, diffusion/training/common.py),
    a setting of the CPU thread that outlives the test; a later test's floats would then be flushed
    too (hypothesis refuses to draw them). Each test ends with the CPU's default back."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)
