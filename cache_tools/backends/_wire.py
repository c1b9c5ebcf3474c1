"""The hot commands (the cache-aside hit read, the lock and entry scripts), sent on the
client's own connections without its command dispatch.

redis-py's ``execute_command`` wraps every command in a retry closure, observability timers
and per-command checks, and its pool checks every connection it hands out for unread data
(three system calls): on the benchmark machine about 25 us and 20 us of a 140 us ``GET``.
These commands are instead packed (the hit read once per entry, kept on its
:class:`~cache_tools.backends.base.EntryKeys`), then sent and read on a connection of the
client's own pool, so the client's settings (TLS, timeouts, health checks) all apply. On
redis-py's and valkey-py's plain pool (RESP2), each thread keeps the connection it took, up to
a quarter of the pool's connections: no one else reads from it, so it needs no check; it is
closed on anything but a whole reply (an interruption between the request and its reply), is
never used by a forked child (which takes its own), and goes back to the pool when the thread
ends. Clients without a pool of their own (cluster and single-connection clients), and pools
with redis-py's client-side cache, always go through the client (:data:`NOT_SENT`); blocking
and Sentinel pools lend a connection per command. These commands do not show in redis-py's
OpenTelemetry metrics.

A command is sent once. A failure before anything was written (no connection could be made,
the pool is exhausted) is marked ``sent = False`` on the exception; any failure after (a timeout
waiting for the reply, a connection that broke) ``sent = True``: the request may have been
applied, so it is never sent again (one socket timeout per call, and no write applied twice).
A reply can be checked against its request (``check``): one that cannot be its answer (the
answer to an earlier request, left on the connection by a network that duplicated bytes) is
never returned; the request's own reply is read after it, and after ``MOST_STRAYS`` such the
connection is closed and the call raises, marked sent.

>>> wire = Wire(client, (redis.ConnectionError, redis.TimeoutError))
>>> envelope, generation = wire.read_entry(keys, check)
>>> reply = wire.send(("EVALSHA", sha, 1, "lock-key", "token"))
>>> if reply is NOT_SENT:
...     reply = client.evalsha(sha, 1, "lock-key", "token")
"""

from __future__ import annotations

import contextlib
import inspect
import os
import select
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._process import PerProcess
from .records import EntryKeys

__all__ = ["NOT_SENT", "AsyncWire", "Check", "Wire", "mark"]

#: What :meth:`Wire.send` returns when the command must go through the client instead.
NOT_SENT: Any = object()


def _pool_of(client: Any) -> Any:
    """The client's pool, when commands may take connections from it directly: not for
    single-connection or cluster clients (no pool of their own), nor for a pool with
    redis-py's client-side cache (its connections answer reads from that cache, keyed on the
    command they were last sent through ``send_command``)."""
    if getattr(client, "connection", None) is not None:
        return None
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "cache", None) is not None:
        return None
    return pool


def _get_connection_args(pool: Any) -> tuple[str, ...]:
    """What the pool's ``get_connection`` needs: a command name in redis-py < 5.3 and
    valkey-py, nothing (a deprecation warning if given) in later redis-py."""
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    required = parameter is not None and parameter.default is inspect.Parameter.empty
    return ("EVALSHA",) if required else ()


def _pack(command: Sequence[Any]) -> bytes | None:
    """``command`` as the RESP array redis-py's default encoder (UTF-8, strict) would send,
    in a third of its time; None for a part of another type (redis-py packs it then)."""
    out = [b"*%d\r\n" % len(command)]
    for part in command:
        kind = type(part)  # exact types first: the common case, and bool is not an int here
        if kind is str:
            data = part.encode()
        elif kind is int:
            data = b"%d" % part
        elif kind is bytes:
            data = part
        elif kind is float:
            data = repr(part).encode()
        elif isinstance(part, str):
            data = part.encode()
        elif isinstance(part, bytes):
            data = part
        else:
            return None
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _default_encoding(pool: Any) -> bool:
    settings = pool.connection_kwargs
    return bool(
        settings.get("encoding", "utf-8") == "utf-8"
        and settings.get("encoding_errors", "strict") == "strict"
    )


#: Replies of earlier requests read past, at most, before a request's own (then the
#: connection is closed): a network that duplicated bytes leaves one behind at a time.
MOST_STRAYS = 3


def mark(exc: BaseException, sent: bool) -> BaseException:
    """``exc``, marked with whether its request may have reached the server."""
    exc.sent = sent  # type: ignore[attr-defined]
    return exc


Check = Callable[[Any], bool]


class _Base:
    __slots__ = ("_args", "_client", "_fallback_on", "_own_packing", "_pool")

    def __init__(self, client: Any, fallback_on: tuple[type[Exception], ...]) -> None:
        self._client, self._fallback_on = client, fallback_on
        pool = self._pool = _pool_of(client)
        self._args = _get_connection_args(pool) if pool is not None else ()
        self._own_packing = pool is not None and _default_encoding(pool)

    def _chunks(self, command: Sequence[Any]) -> list[bytes] | None:
        """``command`` packed as the sync send takes it, or None to leave it to redis-py."""
        packed = _pack(command) if self._own_packing else None
        return None if packed is None else [packed]

    def _entry_chunks(self, keys: EntryKeys) -> list[bytes] | None:
        if keys.packed_read is None:
            keys.packed_read = self._chunks(("MGET", keys.value, *keys.generations))
        return keys.packed_read  # type: ignore[no-any-return]

    def unexpected(self, reply: Any) -> BaseException:
        return mark(
            self._fallback_on[0](f"a reply that is not this request's: {reply!r:.80}"), True
        )


class _Kept:
    """A connection one thread keeps out of the pool between its hot commands: given back
    when the thread ends (its thread-local storage is dropped) or the wire is dropped."""

    __slots__ = ("connection", "poller", "pool", "room", "socket")

    def __init__(self, pool: Any, connection: Any, room: list[None]) -> None:
        self.pool, self.connection, self.room = pool, connection, room
        self.poller: Any = None
        self.socket = -1

    def readable(self) -> bool:
        """Whether the connection has anything to read before a request is sent: the server
        closed it (an idle timeout, ``CLIENT KILL``, a restart) or a stray reply waits. One
        ``poll`` with no timeout; the pool checks what it lends the same way."""
        sock = self.connection._sock
        if sock is None:
            return False
        socket = sock.fileno()
        if socket != self.socket:
            self.poller = select.poll()
            self.poller.register(socket, select.POLLIN)
            self.socket = socket
        return bool(self.poller.poll(0))

    def __del__(self) -> None:
        self.room.append(None)
        # At interpreter exit the pool may be half torn down; the socket closes anyway.
        with contextlib.suppress(Exception):
            self.pool.release(self.connection)  # ignored by the pool of a process forked since


#: Most threads of a process that keep a connection of one pool (the others take one per
#: command, as the client does).
KEPT_CONNECTIONS = 256

# Each pool's room for kept connections, per process (a forked child's pool starts empty):
# ``list.pop``/``append`` count it without a lock, which a fork could leave held.
_rooms: PerProcess[weakref.WeakKeyDictionary[Any, list[None]]] = PerProcess(
    weakref.WeakKeyDictionary
)


def _room_of(pool: Any) -> list[None]:
    """A quarter of the pool's connections (so that the client's other commands always find
    some), shared by every wire on the pool, and at most ``KEPT_CONNECTIONS``."""
    rooms = _rooms.get()
    room = rooms.get(pool)
    if room is None:  # setdefault: one C call, so two threads cannot both make the room
        room = rooms.setdefault(pool, [None] * min(pool.max_connections // 4, KEPT_CONNECTIONS))
    return room


def _may_keep(pool: Any) -> bool:
    """Whether threads may keep connections of this pool: only of redis-py's (or
    valkey-py's) plain pool (a blocking pool would make others wait for a kept connection,
    Sentinel's drops connections to a demoted primary when they come back), and only RESP2
    connections (RESP3 may push messages, such as maintenance notifications, between
    replies)."""
    if type(pool).__name__ != "ConnectionPool":
        return False
    return str(pool.connection_kwargs.get("protocol") or 2) == "2"


class Wire(_Base):
    """Hot commands on a sync client. ``fallback_on``: the client's connection errors (marked
    ``sent`` and raised); ``reply_errors``: its error replies, read whole, which leave a kept
    connection open (any other exception closes it)."""

    __slots__ = ("_kept", "_reply_errors")

    def __init__(
        self,
        client: Any,
        fallback_on: tuple[type[Exception], ...],
        reply_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        super().__init__(client, fallback_on)
        self._reply_errors = reply_errors
        pool = self._pool
        #: Each thread's kept connection (None: every command takes one from the pool).
        self._kept = threading.local() if pool is not None and _may_keep(pool) else None

    def send(self, command: Sequence[Any], check: Check | None = None) -> Any:
        """The reply to ``command``, or :data:`NOT_SENT` (then send it through the client)."""
        return self._send(self._chunks(command), command, check)

    def read_entry(self, keys: EntryKeys, check: Check | None = None) -> Any:
        """``[envelope, generation, tag versions...]`` of an entry."""
        command = ("MGET", keys.value, *keys.generations)
        reply = self._send(self._entry_chunks(keys), command, check)
        if reply is NOT_SENT:
            reply = self._client.mget([keys.value, *keys.generations])
            if check is not None and not check(reply):
                raise self.unexpected(reply)
        return reply

    def _send(self, chunks: list[bytes] | None, command: Sequence[Any], check: Check | None) -> Any:
        here = self._kept
        if here is not None:
            kept = getattr(here, "kept", None)
            if kept is not None:
                connection = kept.connection
                if connection.pid == os.getpid():
                    if kept.readable():  # closed by the server, or a stray reply: start anew
                        connection.disconnect()
                    return self._exchange(connection, chunks, command, check)
                here.kept = None  # the parent's, in a forked child
        pool = self._pool
        if pool is None:
            return NOT_SENT
        try:
            connection = pool.get_connection(*self._args)
        except self._fallback_on as exc:  # no connection (or none left): nothing was sent
            raise mark(exc, False) from None
        if here is not None and self._keep(here, pool, connection):
            return self._exchange(connection, chunks, command, check)
        try:
            return self._exchange(connection, chunks, command, check)
        finally:
            pool.release(connection)

    @staticmethod
    def _keep(here: threading.local, pool: Any, connection: Any) -> bool:
        """Keep ``connection`` for this thread, if the pool has room."""
        room = _room_of(pool)
        try:
            room.pop()
        except IndexError:
            return False
        here.kept = _Kept(pool, connection, room)
        return True

    def _exchange(
        self,
        connection: Any,
        chunks: list[bytes] | None,
        command: Sequence[Any],
        check: Check | None,
    ) -> Any:
        """One request and its reply. Anything but a whole reply that ``check`` accepts closes
        the connection, lest a late reply answer the next command."""
        if connection._sock is None:  # (connect() alone would cost a retry closure)
            try:
                connection.connect()  # a failure here sent nothing
            except self._fallback_on as exc:
                raise mark(exc, False) from None
        try:
            connection.send_packed_command(chunks or connection.pack_command(*command))
            reply = connection.read_response()
        except BaseException as exc:
            if not isinstance(exc, self._reply_errors):
                connection.disconnect()
            if isinstance(exc, self._fallback_on):
                mark(exc, True)
            raise
        strays = 0
        while check is not None and not check(reply):
            # An earlier request's reply (the network sent it twice): this one's is next.
            strays += 1
            if strays > MOST_STRAYS:
                connection.disconnect()
                raise self.unexpected(reply)
            try:
                reply = connection.read_response()
            except BaseException as exc:
                connection.disconnect()
                if isinstance(exc, self._fallback_on):
                    mark(exc, True)
                raise
        return reply


def _readable(connection: Any) -> bool:
    """Whether an asyncio connection's socket has anything to read before a request is sent
    (the pool's own check reads what the event loop has seen, which lags a closing the loop
    has not polled yet)."""
    writer = getattr(connection, "_writer", None)
    sock = None if writer is None else writer.transport.get_extra_info("socket")
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class AsyncWire(_Base):
    """Hot commands on an asyncio client."""

    __slots__ = ()

    async def send(self, command: Sequence[Any], check: Check | None = None) -> Any:
        """The reply to ``command``, or :data:`NOT_SENT` (then send it through the client)."""
        return await self._send(self._chunks(command), command, check)

    async def read_entry(self, keys: EntryKeys, check: Check | None = None) -> Any:
        """``[envelope, generation, tag versions...]`` of an entry."""
        command = ("MGET", keys.value, *keys.generations)
        reply = await self._send(self._entry_chunks(keys), command, check)
        if reply is NOT_SENT:
            reply = await self._client.mget([keys.value, *keys.generations])
            if check is not None and not check(reply):
                raise self.unexpected(reply)
        return reply

    async def _send(
        self, chunks: list[bytes] | None, command: Sequence[Any], check: Check | None
    ) -> Any:
        pool = self._pool
        if pool is None:
            return NOT_SENT
        try:
            connection = await pool.get_connection(*self._args)
        except self._fallback_on as exc:  # no connection (or none left): nothing was sent
            raise mark(exc, False) from None
        try:
            try:
                if _readable(connection):  # closed before the loop noticed: start anew
                    await connection.disconnect()
                if not connection.is_connected:
                    await connection.connect()
            except self._fallback_on as exc:
                raise mark(exc, False) from None
            try:
                await connection.send_packed_command(chunks or connection.pack_command(*command))
                reply = await connection.read_response()
                strays = 0
                while check is not None and not check(reply):
                    strays += 1
                    if strays > MOST_STRAYS:
                        await connection.disconnect()
                        raise self.unexpected(reply)
                    reply = await connection.read_response()
            except self._fallback_on as exc:
                await connection.disconnect()
                raise mark(exc, True) from None
            return reply
        finally:
            await pool.release(connection)
