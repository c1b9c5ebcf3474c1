"""A TCP proxy in front of a real server that misbehaves on request, for fault tests: it holds
replies back (a stalled server or network), cuts one off halfway (a connection that breaks
mid-reply), or sends one twice (a network that duplicates bytes: the client then finds an extra
reply on its connection). Requests always reach the server at once, so what a request did on
the server can be counted while its reply is held back.

>>> with FaultyProxy(("127.0.0.1", 6379)) as proxy:
...     proxy.delay = 5.0          # every reply arrives 5 s late
...     proxy.duplicate_next()     # the next reply arrives twice
...     proxy.truncate_next()      # the next reply stops halfway, and the connection closes
...     url = proxy.url
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

__all__ = ["FaultyProxy"]


class FaultyProxy:
    """Listens on a free local port and forwards every connection to ``upstream``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        #: Seconds every reply is held back before it is forwarded.
        self.delay = 0.0
        self._faults: list[str] = []
        self._guard = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="faulty-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def duplicate_next(self) -> None:
        """Send the next reply (of any connection) twice."""
        with self._guard:
            self._faults.append("duplicate")

    def truncate_next(self) -> None:
        """Send half of the next reply, then close that connection."""
        with self._guard:
            self._faults.append("truncate")

    def close(self) -> None:
        self._closed.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _fault(self) -> str | None:
        with self._guard:
            return self._faults.pop(0) if self._faults else None

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if not replies:
                    target.sendall(data)
                    continue
                if self.delay:
                    time.sleep(self.delay)  # the stall: this connection's replies wait
                fault = self._fault()
                if fault == "truncate":
                    target.sendall(data[: max(1, len(data) // 2)])
                    break
                target.sendall(data)
                if fault == "duplicate":
                    target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __repr__(self) -> str:
        return f"<FaultyProxy :{self.port} -> {self.upstream[0]}:{self.upstream[1]}>"
