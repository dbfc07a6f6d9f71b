"""A loopback TCP relay that drops a client's connection the way a network does, at a chosen point
of a gRPC stream.

Put in front of a gateway, it forwards bytes both ways. The gateway's side is read as HTTP/2
frames (RFC 9113 §4.1: a 9-byte header of length, type and flags, then the payload; a plaintext
server sends nothing else), so it can cut at a message boundary: with `cut_before_data_frame=N`
it closes every open connection (both sides) instead of forwarding the gateway's N-th DATA frame
with a payload, dropping it and all that follows. A gRPC server stream's first message is the
first such frame, so N=2 lets a Generate stream deliver its first event (`queued`) and no more
on that connection. It cuts once; the listener stays open, so the client's reconnection goes
through unharmed.
"""

from __future__ import annotations

import socket
import threading

FRAME_HEADER = 9
DATA = 0


class TcpRelay:
    def __init__(self, target: str, *, cut_before_data_frame: int | None = None):
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._cut_at = cut_before_data_frame
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.cuts = 0
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

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
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump_frames, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        self._close(source, sink)

    def _pump_frames(self, gateway: socket.socket, client: socket.socket) -> None:
        """The gateway's bytes, forwarded a whole HTTP/2 frame at a time."""
        pending, data_frames = b"", 0
        try:
            while chunk := gateway.recv(65536):
                pending += chunk
                while len(pending) >= FRAME_HEADER:
                    size = FRAME_HEADER + int.from_bytes(pending[:3], "big")
                    if len(pending) < size:
                        break
                    frame, pending = pending[:size], pending[size:]
                    if frame[3] == DATA and size > FRAME_HEADER:
                        data_frames += 1
                        if data_frames == self._cut_at and self._take_cut():
                            self._cut_all()
                            return
                    client.sendall(frame)
        except OSError:
            pass
        self._close(gateway, client)

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts:
                return False
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
