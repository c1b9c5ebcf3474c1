"""Redis client tracking, as an :class:`~cache_tools.backends.base.InvalidationFeed`.

Two connections of the alias's own pool class: a listener subscribed to
``__redis__:invalidate``, and a tracking one that asks the server (``CLIENT TRACKING on
REDIRECT <listener> BCAST PREFIX ...``) to tell the listener whenever a key under one of the
prefixes changes. Both are RESP2, where subscription messages are plain replies. Either one's
socket turning readable means an invalidation may be pending: a message, or the server
closing it (a server that forgot this client's tracking sends nothing, and a killed or
restarted server closes both).

>>> feed = RedisFeed(client, ["ct:v:", "ct:g:"])
"""

from __future__ import annotations

import select
from collections.abc import Iterator, Sequence
from typing import Any

from .base import InvalidationFeed

__all__ = ["RedisFeed", "TrackingRefused"]


class TrackingRefused(Exception):
    """The server would not track keys for this client."""


def _connection(client: Any) -> Any:
    """A new connection with the client's settings, in RESP2 (redis-py's RESP3 parser would
    hand subscription messages to a push handler instead), without redis-py's maintenance
    notifications (which need RESP3 and are not wanted here)."""
    pool = client.connection_pool
    kwargs = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if name != "parser_class" and not name.startswith("maint_notifications")
    }
    kwargs["protocol"] = 2
    connection = pool.connection_class(**kwargs)
    connection.connect()
    return connection


class RedisFeed(InvalidationFeed):
    """Invalidations of the keys under ``prefixes``, from Redis client tracking."""

    def __init__(self, client: Any, prefixes: Sequence[str]) -> None:
        self._listener = _connection(client)
        self._tracking: Any = None
        try:
            self._listener.send_command("CLIENT", "ID")
            listener_id = self._listener.read_response()
            self._listener.send_command("SUBSCRIBE", "__redis__:invalidate")
            self._listener.read_response()
            self._poller = select.poll()
            self._poller.register(self._listener._sock, select.POLLIN)
            self._tracking = _connection(client)
            arguments: list[Any] = ["CLIENT", "TRACKING", "on", "REDIRECT", listener_id, "BCAST"]
            for prefix in prefixes:
                arguments += ["PREFIX", prefix]
            self._tracking.send_command(*arguments)
            if self._tracking.read_response() not in (b"OK", "OK"):
                raise TrackingRefused("CLIENT TRACKING was refused")
        except BaseException:
            self.close()
            raise
        self.sockets = (self._listener._sock.fileno(), self._tracking._sock.fileno())

    def wait(self, timeout: float) -> bool:
        return bool(self._poller.poll(timeout * 1000))

    def read(self) -> Iterator[list[bytes] | None]:
        while True:
            message = self._listener.read_response()
            if isinstance(message, list) and message[0] in (b"message", "message"):
                yield message[2]
            if not self._listener.can_read(timeout=0):  # more in redis-py's buffer or socket?
                return

    def check(self) -> None:
        """PING on the tracking connection; its socket holds the reply meanwhile, so copies
        wait for the server that long."""
        self._tracking.send_command("PING")
        self._tracking.read_response()

    def close(self) -> None:
        for connection in (self._listener, self._tracking):
            if connection is not None:
                connection.disconnect()
