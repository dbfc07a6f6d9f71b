"""A loopback TCP relay that can drop a client's connection the way a network does.

Put in front of a gateway, it forwards bytes both ways. `arm()` makes it cut every open
connection (both sides closed) at the next bytes the gateway sends, dropping those bytes: the
client's stream breaks mid-job with what it has read so far, and no later event of that stream
reaches it. The listener stays open, so the client's reconnection goes through unharmed.
"""

from __future__ import annotations

import socket
import threading


class TcpRelay:
    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._armed = False
        self.cuts = 0
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    def arm(self) -> None:
        with self._lock:
            self._armed = True

    def close(self) -> None:
        self._listener.close()
        self._cut_all()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_gateway: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_gateway and self._take_cut():
                    self._cut_all()
                    return
                sink.sendall(data)
        except OSError:
            pass
        self._close(source, sink)

    def _take_cut(self) -> bool:
        with self._lock:
            if not self._armed:
                return False
            self._armed = False
            self.cuts += 1
            return True

    def _cut_all(self) -> None:
        with self._lock:
            sockets, self._open = self._open, set()
        self._close(*sockets)

    def _close(self, *sockets: socket.socket) -> None:
        for s in sockets:
            with self._lock:
                self._open.discard(s)
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
