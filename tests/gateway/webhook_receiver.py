"""A real HTTP endpoint for webhook tests: an http.server on a loopback port, in a thread, that
checks every delivery's signature with the SDK's verifier and answers as the test scripts it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from clients.webhooks import WebhookVerificationError, verify

OK, HANG = "ok", "hang"


@dataclass(frozen=True)
class Received:
    msg_id: str
    timestamp: int
    payload: dict | None  # None: the signature did not verify
    answer: str | int  # OK, HANG or the error status it answered


class Receiver:
    """`script(n, msg_id)` says how to answer the n-th request (0-based): OK (204), HANG (no
    answer until released or the server stops) or an HTTP status."""

    def __init__(self, secrets: list[str], script: Callable[[int, str], str | int] = lambda n, m: OK,
                 path: str = "/hooks/atelier"):
        self.secrets, self.script, self.path = secrets, script, path
        self.received: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k: v for k, v in self.headers.items()}
                try:
                    payload = verify(body, headers, receiver.secrets)
                except WebhookVerificationError:
                    payload = None
                with receiver._lock:
                    n = len(receiver.received)
                    answer = receiver.script(n, headers.get("webhook-id", ""))
                    receiver.received.append(Received(headers.get("webhook-id", ""),
                                                      int(headers.get("webhook-timestamp", 0)), payload, answer))
                if answer == HANG:
                    receiver.release.wait(60)
                    return
                self.send_response(204 if answer == OK else int(answer))
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.answer == OK]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {[(r.msg_id, r.answer) for r in self.received]}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
