import os
import subprocess
import sys

import pytest
import redis

from services.common.embedded_redis import EmbeddedRedis, redis_answers
from tests.redis_harness import SYSTEM_URL, redis_server

pytestmark = pytest.mark.redis


def test_each_test_starts_on_an_empty_database(redis_client):
    assert redis_client.dbsize() == 0
    redis_client.set("left-behind", 1)


def test_keys_of_the_previous_test_are_gone(redis_client):
    assert redis_client.get("left-behind") is None


def test_embedded_server_is_a_real_redis():
    with redis_server("embedded") as server:
        assert server.kind == "embedded"
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"a": "1"})
        assert client.xlen("s") == 1
        assert client.eval("return redis.call('incrby', KEYS[1], ARGV[1])", 1, "n", 5) == 5
        client.close()
    assert not redis_answers(server.url)


@pytest.mark.skipif(not redis_answers(f"{SYSTEM_URL}/0"), reason="no Redis at 127.0.0.1:6379")
def test_system_server_is_used_when_asked_and_databases_are_not_shared():
    with redis_server("system") as first, redis_server("system") as second:
        assert first.kind == second.kind == "system"
        assert first.db != second.db
        a = redis.Redis.from_url(first.url)
        b = redis.Redis.from_url(second.url)
        a.set("k", "first")
        assert b.get("k") is None
        a.close()
        b.close()


def test_system_mode_fails_clearly_without_a_server(monkeypatch):
    port = EmbeddedRedis().port  # a free port nobody listens on
    monkeypatch.setenv("ATELIER_TEST_REDIS_URL", f"redis://127.0.0.1:{port}")
    with pytest.raises(RuntimeError, match="no Redis answers"):
        with redis_server("system"):
            pass


def test_auto_falls_back_to_embedded_when_no_server_answers(monkeypatch):
    port = EmbeddedRedis().port
    monkeypatch.setenv("ATELIER_TEST_REDIS_URL", f"redis://127.0.0.1:{port}")
    with redis_server("auto") as server:
        assert server.kind == "embedded"
        assert redis_answers(server.url)


def test_environment_variable_selects_embedded_for_a_whole_run():
    # A whole pytest run under ATELIER_TEST_REDIS=embedded, in a child process.
    env = dict(os.environ, ATELIER_TEST_REDIS="embedded")
    code = (
        "from tests.redis_harness import redis_server\n"
        "with redis_server() as s: print(s.kind)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         timeout=60)
    assert out.stdout.strip() == "embedded"


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="ATELIER_TEST_REDIS"):
        with redis_server("cluster"):
            pass
