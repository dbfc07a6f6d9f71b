"""The HTTP/JSON edge's server: uvicorn on a thread of the gateway process, beside gRPC."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

import uvicorn
from starlette.applications import Starlette

from services.common.settings import Settings

log = logging.getLogger(__name__)
START_SECONDS = 10.0


class HttpServer:
    """Serves `app` on `listen` ("host:port", port 0: any free one) until stop()."""

    def __init__(self, app: Starlette, listen: str, settings: Settings):
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"ATELIER_HTTP_LISTEN must be host:port, not {listen!r}")
        self.app, self.host = app, host.strip("[]")
        self._socket = _bound(self.host, int(port))
        self.port = self._socket.getsockname()[1]
        tls = {}
        if settings.tls_cert is not None:  # the same certificate and client CA as gRPC
            tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
            if settings.tls_client_ca:
                tls |= {"ssl_ca_certs": str(settings.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        self.scheme = "https" if tls else "http"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds)), **tls)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="atelier-http", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._socket.close()
                raise OSError(f"the HTTP server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        log.info("HTTP/JSON API and playground on %s", self.address)
        return self

    def stop(self, grace: float) -> None:
        """Stop taking requests; open event streams end (their clients reconnect elsewhere)."""
        self.app.state.streams.end_all()
        self._server.should_exit = True
        self._thread.join(grace + 5.0)
        self._socket.close()


def _bound(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} for HTTP ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
