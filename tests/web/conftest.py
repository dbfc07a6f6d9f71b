"""The HTTP/JSON edge on the real gateway (real Redis, real gRPC beside it) with the scripted
stand-in worker of tests/gateway/conftest.py: fast tests of the edge, not of the images."""

from __future__ import annotations

import json

import pytest
import requests

from tests.gateway.conftest import keys, make_stack, model_repo  # noqa: F401

CALL_SECONDS = 10.0  # every HTTP call of these tests has a deadline


class Api:
    """`requests` against one gateway's HTTP address, as one API key."""

    def __init__(self, base: str, key: str | None):
        self.base, self.key = base, key
        self.session = requests.Session()

    def headers(self, **extra) -> dict:
        auth = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return auth | extra

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.base + path, headers=self.headers(**kw.pop("headers", {})),
                                timeout=CALL_SECONDS, **kw)

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return self.session.post(self.base + path, json=body, headers=self.headers(**kw.pop("headers", {})),
                                 timeout=CALL_SECONDS, **kw)

    def events(self, job_id: str, last_event_id: str = "") -> list[tuple[str, str, dict]]:
        """The job's server-sent events until the stream ends: (id, event, data) each."""
        headers = self.headers(**({"Last-Event-ID": last_event_id} if last_event_id else {}))
        with self.session.get(f"{self.base}/v1/jobs/{job_id}/events", headers=headers, stream=True,
                              timeout=CALL_SECONDS) as response:
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/event-stream")
            return parse_sse(response.iter_lines(decode_unicode=True))


def parse_sse(lines) -> list[tuple[str, str, dict]]:
    out, fields = [], {}
    for line in lines:
        if line == "":
            if "data" in fields:
                out.append((fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return out


@pytest.fixture
def web(make_stack):  # noqa: F811
    """A gateway with its HTTP edge on a free port and the scripted worker running."""
    stack = make_stack(start_worker=True, http_listen="127.0.0.1:0")
    return stack


@pytest.fixture
def alice(web) -> Api:
    return Api(web.gateway.http_address, web.keys.alice)


@pytest.fixture
def bob(web) -> Api:
    return Api(web.gateway.http_address, web.keys.bob)
