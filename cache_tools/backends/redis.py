"""Redis: django-redis's ``RedisCache`` and Django's built-in ``RedisCache``.

Every multi-key operation is one Lua script (kept as ``.lua`` files beside this module), so a
lock acquire, a release with its wake-up, a cache-aside miss that takes the entry's lock, and a
store with its release are each one round trip. Values inside cache-aside envelopes are encoded
with the alias's own serializer and compressor, like ``cache.set`` would.

The two Django backends differ only in where their client and codec live: each adapter
overrides :meth:`RedisBackend.connect`, the one hook a new Redis-protocol backend needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib
import inspect
import itertools
import os
import pickle
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, NamedTuple

import redis
import redis.exceptions

from .._process import PerProcess, hold_across_fork, jitter
from ..drive import Steps, adrive, call, drive
from ..errors import (
    BackendUnavailable,
    OutcomeUnknown,
    StoreRefused,
    UnserializableValue,
    UpdateConflict,
)
from ._wire import NOT_SENT, AsyncWire, Wire
from .base import (
    HIT,
    MISS,
    STALE,
    Backend,
    EntryKeys,
    Fetched,
    LockKeys,
    LockState,
    ScanReport,
    ServerKey,
    ThreadedTwin,
    holder_of,
)

__all__ = [
    "AsyncRedisBackend",
    "BuiltinRedisBackend",
    "ClientErrors",
    "Codec",
    "DjangoRedisBackend",
    "RedisBackend",
]

_HERE = Path(__file__).parent
_LONGEST_WAIT = 1.0  # seconds; WAITER_GRACE_MS in _common.lua is twice this
#: How long a lock handed to the waiter blocked longest waits for it to claim it (a live waiter
#: claims at once; one killed in that moment leaves the lock free after this).
CLAIM_SECONDS = 0.25

# The pools the adapters' clients send on, shared by every thread of the process. redis-py 8's
# ``ConnectionPool.reset()``, which a forked child runs at its first command, takes the lock
# the child inherited: held at the fork by another thread (the statistics flusher releasing a
# connection, say), it is never released there. Their locks are held through each fork.
_pools: weakref.WeakSet[Any] = weakref.WeakSet()


def _pool_locks() -> list[Any]:
    """The locks of the pools this process has used since it started or was forked."""
    here = os.getpid()
    return [
        lock
        for pool in list(_pools)
        if getattr(pool, "pid", None) == here and (lock := getattr(pool, "_lock", None)) is not None
    ]


hold_across_fork(_pool_locks)


_DEFINED = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)


def _prelude(body: str) -> str:
    """The definitions of ``_common.lua`` that ``body`` uses, directly or through each other,
    in their order there: a script carries (and the server runs) only what it calls."""
    common = (_HERE / "_common.lua").read_text()
    parts = [(names, part) for part in common.split("\n\n") if (names := _DEFINED.findall(part))]
    used: set[int] = set()
    pending = [body]
    while pending:
        text = pending.pop()
        for index, (names, part) in enumerate(parts):
            if index not in used and any(re.search(rf"\b{name}\b", text) for name in names):
                used.add(index)
                pending.append(part)
    return "\n\n".join(part for index, (_, part) in enumerate(parts) if index in used)


# What every script's reply is wrapped in: the request's nonce (the script's last argument),
# so that a reply is never taken for another request's (see ._wire). A table gets the nonce as
# its first element; anything else travels as one string, "<nonce>|" and a type ("i" a whole
# number, "s" a string, "n" nothing) with the value: a one-string reply costs redis-py's
# parser a third of what an array of two does (about 12 us less per script without hiredis).
_ECHO = """
local reply = script()
local nonce = ARGV[#ARGV]
if type(reply) == 'table' then
  table.insert(reply, 1, nonce)
  return reply
elseif type(reply) == 'number' then
  return nonce .. '|i' .. string.format('%d', reply)
elseif type(reply) == 'string' then
  return nonce .. '|s' .. reply
end
return nonce .. '|n'
"""


class _Script:
    """One Lua script with what it uses of ``_common.lua`` prepended, run by EVALSHA with an
    EVAL fallback; its reply echoes the request's nonce (:data:`_ECHO`, :class:`_Echo`)."""

    def __init__(self, name: str) -> None:
        body = (_HERE / f"{name}.lua").read_text()
        self.source = f"{_prelude(body)}\n\nlocal function script()\n{body}\nend\n{_ECHO}"
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


# Each request's own number, echoed by its script: per process, a fork child's anew.
_nonces: PerProcess[Iterator[int]] = PerProcess(itertools.count)


class _Echo:
    """Checks that a script's reply echoes its request's nonce, and unwraps it."""

    __slots__ = ("head", "nonce")

    def __init__(self) -> None:
        nonce = self.nonce = b"%d" % next(_nonces.get())
        self.head = nonce + b"|"

    def __call__(self, reply: Any) -> bool:
        if type(reply) is bytes:
            return reply.startswith(self.head)
        return type(reply) is list and bool(reply) and reply[0] == self.nonce

    def unwrap(self, reply: Any) -> Any:
        """The script's own reply (checked already)."""
        if type(reply) is list:
            return reply[1:]
        start = len(self.head)
        kind, value = reply[start : start + 1], reply[start + 1 :]
        if kind == b"i":
            return int(value)
        return value if kind == b"s" else None


def _envelope_check(keys: EntryKeys) -> Callable[[Any], bool]:
    """Checks that a hit read's reply is this entry's: its envelope names the entry's key
    (``ct3|<tag>|``, a digest of the key the store script wrote it under), or there is none."""
    check = keys.read_check
    if check is None:
        check = keys.read_check = functools.partial(_entry_reply, b"ct3|" + _tag(keys.value) + b"|")
    return check  # type: ignore[no-any-return]


def _entry_reply(head: bytes, reply: Any) -> bool:
    return (
        type(reply) is list and len(reply) == 2 and (reply[0] is None or reply[0].startswith(head))
    )


def _tag(key: str) -> bytes:
    """What an envelope names its key by (aside_store.lua computes the same)."""
    return hashlib.sha1(key.encode()).hexdigest()[:8].encode()


@functools.cache
def _script(name: str) -> _Script:
    return _Script(name)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class Codec:
    """Encodes values as the alias's own ``cache.set`` would (serializer and compressor)."""

    __slots__ = ("_dumps", "decode")

    def __init__(self, dumps: Callable[[Any], Any], loads: Callable[[bytes], Any]) -> None:
        self._dumps, self.decode = dumps, loads

    def encode(self, value: Any) -> bytes:
        try:
            encoded = self._dumps(value)
        except Exception as exc:
            raise UnserializableValue(f"cannot serialise {type(value).__name__}: {exc}") from exc
        return encoded if isinstance(encoded, bytes) else str(encoded).encode()


_PICKLE_DEFAULTS = {
    ("django_redis.serializers.pickle", "PickleSerializer"),
    ("django_redis.compressors.identity", "IdentityCompressor"),
    ("django_valkey.serializers.pickle", "PickleSerializer"),
    ("django_valkey.compressors.identity", "IdentityCompressor"),
}


def client_codec(inner: Any) -> Codec:
    """The codec of a django-redis or django-valkey client: its own ``encode``/``decode``, with
    a shortcut on the default configuration (pickle, no compression). Their ``decode`` first
    tries ``int(value)``, which raises on every pickle; a pickle of protocol 2 or later starts
    with 0x80, which no number does, so it goes to ``pickle.loads`` at once (the same result,
    about 2 us sooner)."""
    parts = (inner._serializer, inner._compressor)
    if not all((type(p).__module__, type(p).__name__) in _PICKLE_DEFAULTS for p in parts):
        return Codec(inner.encode, inner.decode)

    def decode(payload: bytes, loads: Callable[[bytes], Any] = pickle.loads) -> Any:
        return loads(payload) if payload[:1] == b"\x80" else inner.decode(payload)

    return Codec(inner.encode, decode)


class ClientErrors(NamedTuple):
    """The exception classes of one Redis-protocol client library: redis-py and valkey-py
    have the same hierarchy under different names, and the adapter catches the ones of the
    library its client comes from."""

    base: tuple[type[Exception], ...]
    #: The cluster client's own failures (no reachable node, keys in several slots).
    cluster: type[Exception]
    connection: tuple[type[Exception], ...]
    busy: type[Exception]
    response: type[Exception]
    out_of_memory: type[Exception]
    read_only: type[Exception]
    watch: type[Exception]
    no_script: type[Exception]
    #: A cluster that refuses a request while it moves or promotes (nothing was applied).
    cluster_down: tuple[type[Exception], ...]

    @classmethod
    def of(cls, exceptions: ModuleType) -> ClientErrors:
        """From a library's ``exceptions`` module (``redis.exceptions``, ``valkey.exceptions``)."""
        cluster_base = next(
            getattr(exceptions, name)
            for name in ("RedisClusterException", "ValkeyClusterException")
            if hasattr(exceptions, name)
        )
        base = next(
            getattr(exceptions, name)
            for name in ("RedisError", "ValkeyError")
            if hasattr(exceptions, name)
        )
        return cls(
            base=(base, cluster_base),
            cluster=cluster_base,
            connection=(exceptions.ConnectionError, exceptions.TimeoutError),
            busy=exceptions.BusyLoadingError,
            response=exceptions.ResponseError,
            out_of_memory=exceptions.OutOfMemoryError,
            read_only=exceptions.ReadOnlyError,
            watch=exceptions.WatchError,
            no_script=exceptions.NoScriptError,
            cluster_down=(
                exceptions.ClusterDownError,
                exceptions.TryAgainError,
                exceptions.SlotNotCoveredError,
            ),
        )


REDIS_ERRORS = ClientErrors.of(redis.exceptions)

# redis-py raises WatchError both for a real conflict and for a connection lost while
# watching; only this message means another writer changed the key.
_CONFLICT = "Watched variable changed"


def _sent_before_failing(exc: Exception) -> bool:
    """False when the connection failed before the request left (nothing was applied): as the
    wire marks it (``sent``), else as the client says (a failed connect, an exhausted pool)."""
    sent = getattr(exc, "sent", None)
    if sent is not None:
        return bool(sent)
    message = str(exc).lower()
    return "connecting to" not in message and "too many connections" not in message


def _translation(alias: str, exc: Exception, errors: ClientErrors) -> Exception | None:
    """cache_tools's error for a client library's error (None: not ours to translate)."""
    if isinstance(exc, errors.busy):  # refused while loading its data: nothing applied
        return BackendUnavailable(f"cache {alias!r} is starting: {exc}")
    if isinstance(exc, errors.cluster_down):  # refused mid-failover: nothing applied
        return BackendUnavailable(f"cache {alias!r} is failing over: {exc}")
    if isinstance(exc, errors.cluster) and "cannot be connected" in str(exc):
        return BackendUnavailable(f"cache {alias!r}: no node of the cluster answers: {exc}")
    if isinstance(exc, errors.connection):
        if _sent_before_failing(exc):
            return OutcomeUnknown(
                f"cache {alias!r} did not answer; the request may or may not have been "
                f"applied: {exc}"
            )
        return BackendUnavailable(f"cache {alias!r} is unreachable: {exc}")
    if isinstance(exc, errors.response):
        message = str(exc)
        if isinstance(exc, errors.out_of_memory) or "OOM command not allowed" in message:
            return StoreRefused(f"cache {alias!r} refused the write (maxmemory): {exc}")
        if "MISCONF" in message:
            return StoreRefused(f"cache {alias!r} refuses writes: {exc}")
        if isinstance(exc, errors.read_only) or "READONLY" in message:  # a replica, mid-failover
            return BackendUnavailable(f"cache {alias!r} is read-only now: {exc}")
    return None


@contextlib.contextmanager
def _translated(alias: str, errors: ClientErrors) -> Iterator[None]:
    """The client library's errors as cache_tools's: outages, unknown outcomes, refusals."""
    try:
        yield
    except errors.base as exc:
        error = _translation(alias, exc, errors)
        if error is None:
            raise
        raise error from exc


class _SyncRedis:
    """What the adapter's steps ask of the server, on a sync client (errors translated)."""

    def __init__(self, client: Any, alias: str, errors: ClientErrors = REDIS_ERRORS) -> None:
        self.client, self.alias, self.errors = client, alias, errors
        self.wire = Wire(client, errors.connection, (errors.response,))

    def _fail(self, exc: Exception) -> Exception:
        return _translation(self.alias, exc, self.errors) or exc

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script, echo = _script(name), _Echo()
        arguments = (len(keys), *keys, *args, echo.nonce)
        try:
            try:
                reply = self.wire.send(("EVALSHA", script.sha, *arguments), echo)
                if reply is NOT_SENT:
                    reply = self.client.evalsha(script.sha, *arguments)
            except self.errors.no_script:
                reply = self.client.eval(script.source, *arguments)
            if not echo(reply):  # through the client: its pool drops such a connection
                raise self.wire._unexpected(reply)
        except self.errors.base as exc:
            raise self._fail(exc) from exc
        return echo.unwrap(reply)

    def command(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except self.errors.base as exc:
            raise self._fail(exc) from exc

    def watch(self, key: str) -> tuple[Any, bytes | None]:
        """Start an optimistic transaction on ``key``: ``(transaction, value)``."""
        pipe: Any = self.client.pipeline(transaction=True)
        try:
            pipe.watch(key)
            return pipe, pipe.get(key)
        except self.errors.watch as exc:  # redis-py's name for a connection lost while watching
            self.forget(pipe)
            raise BackendUnavailable(f"cache {self.alias!r} is unreachable: {exc}") from exc
        except self.errors.base as exc:
            self.forget(pipe)
            raise self._fail(exc) from exc

    def commit(self, pipe: Any, key: str, payload: bytes, px: int | None) -> None:
        try:
            pipe.multi()
            pipe.set(key, payload, px=px)
            pipe.execute()
        except self.errors.watch:
            raise
        except self.errors.base as exc:
            raise self._fail(exc) from exc
        finally:
            self.forget(pipe)

    def forget(self, pipe: Any) -> None:
        with contextlib.suppress(*self.errors.base):  # UNWATCH on a server that may be gone
            pipe.reset()

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


class _AsyncRedis:
    """The same, on a ``redis.asyncio`` client."""

    def __init__(self, client: Any, alias: str, errors: ClientErrors = REDIS_ERRORS) -> None:
        self.client, self.alias, self.errors = client, alias, errors
        self.wire = AsyncWire(client, errors.connection)

    def _fail(self, exc: Exception) -> Exception:
        return _translation(self.alias, exc, self.errors) or exc

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script, echo = _script(name), _Echo()
        arguments = (len(keys), *keys, *args, echo.nonce)
        try:
            try:
                reply = await self.wire.send(("EVALSHA", script.sha, *arguments), echo)
                if reply is NOT_SENT:
                    reply = await self.client.evalsha(script.sha, *arguments)
            except self.errors.no_script:
                reply = await self.client.eval(script.source, *arguments)
            if not echo(reply):
                raise self.wire._unexpected(reply)
        except self.errors.base as exc:
            raise self._fail(exc) from exc
        return echo.unwrap(reply)

    async def command(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.client, method)(*args, **kwargs)
        except self.errors.base as exc:
            raise self._fail(exc) from exc

    async def watch(self, key: str) -> tuple[Any, bytes | None]:
        pipe = self.client.pipeline(transaction=True)
        try:
            await pipe.watch(key)
            return pipe, await pipe.get(key)
        except self.errors.watch as exc:
            await self.forget(pipe)
            raise BackendUnavailable(f"cache {self.alias!r} is unreachable: {exc}") from exc
        except self.errors.base as exc:
            await self.forget(pipe)
            raise self._fail(exc) from exc

    async def commit(self, pipe: Any, key: str, payload: bytes, px: int | None) -> None:
        try:
            pipe.multi()
            pipe.set(key, payload, px=px)
            await pipe.execute()
        except self.errors.watch:
            raise
        except self.errors.base as exc:
            raise self._fail(exc) from exc
        finally:
            await self.forget(pipe)

    async def forget(self, pipe: Any) -> None:
        with contextlib.suppress(*self.errors.base):
            await pipe.reset()

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)


def _parse_entry(envelope: bytes | None, generation: bytes | None, codec: Codec) -> Fetched:
    """What an entry and its generation, read together, say. An envelope is
    ``ct3|<key tag>|<generation>|<stale after>|<expires at>|<payload>`` (ms on the server's
    clock, 0 for never); hosts are assumed to keep their clocks in sync."""
    if generation is None or envelope is None or not envelope.startswith(b"ct3|"):
        return Fetched(MISS)
    _, _, entry_generation, stale_after, expires_at, payload = envelope.split(b"|", 5)
    if entry_generation != generation:
        return Fetched(MISS)
    fresh = stale_after == b"0" or time.time() * 1000 < int(stale_after)
    # Positional: this is the hit path (state, value, fence, wait, generation, payload, until).
    return Fetched(
        HIT if fresh else STALE,
        codec.decode(payload),
        None,
        None,
        int(generation),
        payload,
        _until(int(stale_after), int(expires_at)),
    )


def _lock_state(replies: list[Any], seconds: int, micros: int) -> LockState:
    """What a lock's keys, read together (:meth:`RedisBackend.lock_states`), say of it."""
    token, ticket, fence, registered, waiting = replies
    if token is None or (ticket is not None and token == b"~" + ticket):
        return LockState(False, waiters=0)  # free, or handed over with nobody to take it
    now_ms = seconds * 1000 + micros // 1000
    # Registrations can outlive waiters that gave up; a waiter is seen until it stops asking.
    waiters = int(registered or 0) + sum(1 for _, until in waiting if until > now_ms)
    # A fence is at least the server clock (µs) when it was taken: see _common.lua.
    age = None if fence is None else max(0.0, seconds + micros / 1e6 - int(fence) / 1e6)
    fence_number = None if fence is None else int(fence)
    return LockState(True, holder_of(token.decode()), age, fence_number, waiters)


def _until(stale_after: int, expires_at: int) -> int:
    """Until when (ms) a copy of the entry may be served as fresh: 0 for no limit."""
    if stale_after and expires_at:
        return min(stale_after, expires_at)
    return stale_after or expires_at


# The adapter's operations, each written once as steps (see cache_tools.drive) that ask a
# _SyncRedis or an _AsyncRedis for scripts and commands; the sync adapter and its async twin
# both run them.
_OPERATIONS = (
    "acquire",
    "release",
    "extend",
    "owner",
    "wait",
    "exists",
    "delete",
    "fetch",
    "store",
    "invalidate",
    "bump_generation",
    "read_counts",
    "delete_counts",
    "update",
)


class RedisBackend(Backend):
    """The adapter for Redis-protocol caches; subclasses say where the client and codec are."""

    can_list_keys = True
    clear_is_global = True
    atomic_update = True
    tracking = True
    #: The exception classes of the client library :meth:`connect` returns a client of.
    errors: ClassVar[ClientErrors] = REDIS_ERRORS

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._connected: tuple[redis.Redis, Codec, float, _SyncRedis] | None = None
        # The last loop's twin, checked first (a WeakKeyDictionary lookup makes a weakref).
        self._last_twin: tuple[weakref.ref[asyncio.AbstractEventLoop], Any] | None = None
        self._twins: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncRedisBackend | ThreadedTwin
        ] = weakref.WeakKeyDictionary()

    def connect(self) -> tuple[redis.Redis, Codec]:
        """A redis-py client for the alias and the alias's value codec: the one hook a
        Redis-protocol backend overrides. Called once per adapter; the client must be safe to
        share between threads (redis-py's clients are, and their pools notice a fork)."""
        raise NotImplementedError

    def cache_client(self) -> Any:
        """The Django cache's own client object (``cache.client`` of django-redis and
        django-valkey), which :meth:`connect` asks for a redis-py client; made without
        connecting."""
        return self.cache.client  # type: ignore[attr-defined]

    def prepare(self) -> None:
        super().prepare()
        self.cache_client()

    def connection(self) -> tuple[redis.Redis, Codec]:
        """The alias's client and codec, made once by :meth:`connect`."""
        connected = self._connected or self._connect()
        return connected[0], connected[1]

    def _connect(self) -> tuple[redis.Redis, Codec, float, _SyncRedis]:
        client, codec = self.connect()
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            _pools.add(pool)
        socket_timeout = self.connection_settings(client).get("socket_timeout")
        longest = min(_LONGEST_WAIT, socket_timeout / 2) if socket_timeout else _LONGEST_WAIT
        self._connected = (client, codec, longest, self.target(client))
        return self._connected

    def connection_settings(self, client: Any) -> dict[str, Any]:
        """The keyword arguments the client's connections are made with."""
        return dict(client.connection_pool.connection_kwargs)

    def target(self, client: Any) -> _SyncRedis:
        """What the operations' steps run on (see :mod:`cache_tools.drive`)."""
        return _SyncRedis(client, self.alias, self.errors)

    def client(self) -> redis.Redis:
        return (self._connected or self._connect())[0]

    def _codec(self) -> Codec:
        return (self._connected or self._connect())[1]

    def decode(self, payload: bytes) -> Any:
        return self._codec().decode(payload)

    def companion_key(self, base: ServerKey, suffix: str) -> ServerKey:
        # The lock's server key and the suffix, as the scripts name companions from the one
        # key they are given (fewer keys to send on every lock and cache-aside round trip).
        return ServerKey(base + suffix, base.name + suffix)

    def tracking_connection(self) -> Any:
        pool = self.client().connection_pool
        # RESP2, where SUBSCRIBE confirmations and messages are plain replies (redis-py's
        # RESP3 parser would hand them to a push handler instead); redis-py's maintenance
        # notifications need RESP3, and this connection does not want them.
        kwargs = {
            name: value
            for name, value in pool.connection_kwargs.items()
            if name != "parser_class" and not name.startswith("maint_notifications")
        }
        kwargs["protocol"] = 2
        connection = pool.connection_class(**kwargs)
        connection.connect()
        return connection

    def asynchronous(self) -> AsyncRedisBackend | ThreadedTwin:
        """This adapter's async twin for the running event loop: a native one (one connection
        pool per loop, closed when the loop shuts down its async generators, as
        ``asyncio.run`` and asgiref do), or worker threads where the client library has no
        async twin of the client's connections (Sentinel-managed, cluster)."""
        loop = asyncio.get_running_loop()
        last = self._last_twin
        if last is not None and last[0]() is loop:
            return last[1]  # type: ignore[no-any-return]
        twin = self._twins.get(loop)
        if twin is None:
            client = self.async_client()
            if client is None:
                twin = self._twins[loop] = ThreadedTwin(self, blocking_wait=True)
            else:
                twin = self._twins[loop] = AsyncRedisBackend(self, client)
                twin.close_with(loop)
        self._last_twin = (weakref.ref(loop), twin)
        return twin

    #: The client library's asyncio module and its client class.
    async_library: ClassVar[tuple[str, str]] = ("redis.asyncio", "Redis")

    def async_client(self) -> Any:
        """A new asyncio client with the sync client's connection settings, or None."""
        return _async_client(self.client(), *self.async_library)

    # Locks -------------------------------------------------------------------------------

    @property
    def max_wait(self) -> float:
        return (self._connected or self._connect())[2]

    def _seen_ms(self) -> int:
        """How long a waiter counts as waiting after it last asked (dashboards): waiters ask
        again at least every ``max_wait``."""
        return round((2 * self.max_wait + 0.5) * 1000)

    def _acquire(
        self,
        keys: LockKeys,
        token: str,
        ttl: float,
        register_waiter: bool,
        attempt: int = 0,
        ticket: str | None = None,
    ) -> Steps[tuple[bool, int | float]]:
        number = yield call(
            "script",
            "lock_acquire",
            [keys.lock],
            [
                token,
                _ms(ttl),
                int(register_waiter),
                ticket or "",
                self._seen_ms(),
                int(attempt > 0),
            ],
        )
        if number > 0:
            return True, number
        return False, (-1 - number) / 1000

    def _release(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> Steps[bool]:
        wake = "hand" if keys.handover else "all" if wake_all else "one"
        later = _ms(uncacheable) if uncacheable else 0
        released = yield call(
            "script", "lock_release", [keys.lock], [token, wake, _ms(CLAIM_SECONDS), later]
        )
        return bool(released)

    def _extend(self, keys: LockKeys, token: str, ttl: float) -> Steps[bool]:
        return bool((yield call("script", "lock_extend", [keys.lock], [token, _ms(ttl)])))

    def _owner(self, keys: LockKeys) -> Steps[str | None]:
        token = yield call("script", "lock_owner", [keys.lock], [])
        return None if token is None else token.decode()

    def _wait(self, keys: LockKeys, timeout: float) -> Steps[str | None]:
        # BLPOP takes seconds with millisecond precision (Redis >= 6); 0 would mean forever.
        popped = yield call("command", "blpop", [keys.signal], timeout=max(timeout, 0.001))
        return None if popped is None else popped[1].decode()

    def _exists(self, key: ServerKey) -> Steps[bool]:
        return bool((yield call("command", "exists", key)))

    def _delete(self, key: ServerKey) -> Steps[bool]:
        return bool((yield call("command", "delete", key)))

    def eviction_policy(self) -> str | None:
        """From ``INFO memory`` (which managed services that disable ``CONFIG`` still allow);
        of several servers (a cluster's primaries), one that evicts if any does."""
        policies = set()
        with _translated(self.alias, self.errors):
            for server in self.servers():
                policies.add(str(server.info("memory").get("maxmemory_policy", "")))
        evicting = sorted(p for p in policies if p and p != "noeviction")
        if evicting:
            return evicting[0]
        return "noeviction" if policies == {"noeviction"} else None

    def waiters(self, keys: LockKeys) -> int | None:
        return self.lock_state(keys).waiters

    def lock_state(self, keys: LockKeys) -> LockState:
        return self.lock_states([keys])[0]

    def lock_states(self, keys: Sequence[LockKeys]) -> list[LockState]:
        """One pipeline for every lock."""
        with _translated(self.alias, self.errors):
            pipe = self.client().pipeline(transaction=False)
            for lock_keys in keys:
                pipe.get(lock_keys.lock)
                pipe.lindex(lock_keys.signal, 0)  # a hand-over's ticket is alone on its list
                pipe.get(lock_keys.fence)
                pipe.get(lock_keys.waiters)
                pipe.zrange(lock_keys.waiting, 0, -1, withscores=True)
            pipe.time()
            replies = pipe.execute()
        seconds, micros = replies[-1]
        return [_lock_state(replies[i * 5 : i * 5 + 5], seconds, micros) for i in range(len(keys))]

    # Cache-aside -------------------------------------------------------------------------

    def read(self, keys: EntryKeys) -> Fetched:
        _, codec, _, target = self._connected or self._connect()
        try:
            pair: Any = target.wire.read_entry(keys, _envelope_check(keys))
        except self.errors.base as exc:
            raise _translation(self.alias, exc, self.errors) or exc from exc
        return _parse_entry(pair[0], pair[1], codec)

    def _fetch(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Steps[Fetched]:
        lock = keys.lock
        state, envelope, number, generation = yield call(
            "script",
            "aside_fetch",
            [keys.value, keys.generation, lock.lock],
            [token or "", _ms(lock_ttl), int(recompute)],
        )
        generation = int(generation)
        if state == -1:
            return Fetched(MISS, wait=max(number, 0) / 1000, generation=generation)
        if state == -2:  # not storable lately: compute without the lock
            return Fetched(MISS, generation=generation)
        fence = int(number) or None
        if state == 0:
            return Fetched(MISS, fence=fence, generation=generation)
        value = self._codec().decode(envelope.split(b"|", 5)[5])
        kind = HIT if state == 1 else STALE
        return Fetched(kind, value=value, fence=fence, generation=generation)

    def _store(
        self,
        keys: EntryKeys,
        value: Any,
        *,
        timeout: float | None,
        stale: float,
        generation: int | None,
        token: str | None = None,
        fence: int | None = None,
    ) -> Steps[bool]:
        fresh_ms = 0 if timeout is None or not stale else _ms(timeout)
        ttl_ms = 0 if timeout is None else _ms(timeout + stale)
        args: list[Any] = [
            self._codec().encode(value),
            fresh_ms,
            ttl_ms,
            "" if generation is None else generation,
            token or "",
            fence or 0,
        ]
        entry_keys = [keys.value, keys.generation, keys.lock.lock]
        return bool((yield call("script", "aside_store", entry_keys, args)))

    def _invalidate(self, keys: EntryKeys) -> Steps[bool]:
        return bool((yield call("script", "aside_invalidate", [keys.value, keys.lock.lock], [])))

    def _bump_generation(self, generation_key: ServerKey, ttl: float | None = None) -> Steps[int]:
        return int((yield call("script", "generation_bump", [generation_key], [])))

    def add_counts(
        self, counts: Mapping[ServerKey, Mapping[str, int]], ttl: float | None = None
    ) -> set[ServerKey]:
        """One pipeline of ``HINCRBY`` (only the statistics flusher, a thread, calls this)."""
        sent: list[tuple[ServerKey, int | None]] = []  # (key, increment; None: the PEXPIRE)
        with _translated(self.alias, self.errors):
            pipe = self.client().pipeline(transaction=False)
            for stats_key, fields in counts.items():
                for field, increment in fields.items():
                    pipe.hincrby(stats_key, field, increment)
                    sent.append((stats_key, increment))
                if ttl is not None:
                    pipe.pexpire(stats_key, int(ttl * 1000))
                    sent.append((stats_key, None))
            replies = pipe.execute()
        started = set(counts)
        for (stats_key, added), reply in zip(sent, replies, strict=True):
            if added is not None and reply != added:
                started.discard(stats_key)  # the field had a count before this one
        return started

    def read_counts_many(
        self, stats_keys: Sequence[ServerKey], fields: tuple[str, ...]
    ) -> list[dict[str, int]]:
        with _translated(self.alias, self.errors):
            pipe = self.client().pipeline(transaction=False)
            for stats_key in stats_keys:
                pipe.hmget(stats_key, fields)
            rows = pipe.execute()
        return [
            {field: int(number or 0) for field, number in zip(fields, row, strict=True)}
            for row in rows
        ]

    def note_names(
        self,
        registry: ServerKey,
        names: Mapping[str, float],
        keep: int,
        max_age: float | None = None,
    ) -> None:
        with _translated(self.alias, self.errors):
            pipe = self.client().pipeline(transaction=False)
            pipe.zadd(registry, dict(names))
            pipe.zremrangebyrank(registry, 0, -keep - 1)
            if max_age is not None:
                pipe.zremrangebyscore(registry, "-inf", f"({max(names.values()) - max_age}")
                pipe.expire(registry, int(max_age) + 1)
            pipe.execute()

    def read_names(self, registry: ServerKey) -> dict[str, float]:
        with _translated(self.alias, self.errors):
            found: Any = self.client().zrange(registry, 0, -1, withscores=True)
        return {
            name.decode() if isinstance(name, bytes) else name: float(when) for name, when in found
        }

    def has_names(self, registry: ServerKey) -> bool:
        with _translated(self.alias, self.errors):
            return bool(self.client().exists(registry))

    def add_lock_counts(
        self,
        counts: Mapping[str, Mapping[str, int]],
        fields: tuple[str, ...],
        keep: int,
        max_age: float,
    ) -> None:
        """One script (only the statistics flusher, a thread, calls this)."""
        args: list[Any] = [keep, max_age, ",".join(fields)]
        for name, added in counts.items():
            for field, amount in added.items():
                args += [name, field, amount]
        keys = [self.lock_counts_key(), self.registry_key("locks")]
        (self._connected or self._connect())[3].script("lock_counts", keys, args)

    def read_lock_counts(
        self, fields: tuple[str, ...], names: Sequence[str] | None = None
    ) -> dict[str, dict[str, int]]:
        with _translated(self.alias, self.errors):
            client = self.client()
            if names is None:
                found: list[bytes] = client.zrange(self.registry_key("locks"), 0, -1)  # type: ignore[assignment]
                names = [name.decode() for name in found]
            wanted = [f"{field}:{name}" for name in names for field in fields]
            numbers = client.hmget(self.lock_counts_key(), wanted) if wanted else []
        width = len(fields)
        return {
            name: {
                field: int(number or 0)
                for field, number in zip(fields, numbers[i * width : (i + 1) * width], strict=True)
            }
            for i, name in enumerate(names)
        }

    def _read_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> Steps[dict[str, int]]:
        numbers = yield call("command", "hmget", stats_key, fields)
        return {field: int(number or 0) for field, number in zip(fields, numbers, strict=True)}

    def _delete_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> Steps[None]:
        yield call("command", "delete", stats_key)

    # Atomic read-modify-write ------------------------------------------------------------

    def _update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Steps[Any]:
        codec = self._codec()
        key = self._make(key)
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            pipe, raw = yield call("watch", key)
            try:
                new = function(None if raw is None else codec.decode(raw))  # the caller's code
                payload = codec.encode(new)
            except BaseException:
                yield call("forget", pipe)
                raise
            try:
                yield call("commit", pipe, key, payload, None if timeout is None else _ms(timeout))
                return new
            except self.errors.watch as exc:
                if _CONFLICT not in str(exc):  # the connection broke around EXEC
                    raise OutcomeUnknown(
                        f"update of {key!r}: the connection to cache {self.alias!r} broke "
                        f"while writing; the update may or may not have been applied: {exc}"
                    ) from exc
            if time.monotonic() >= deadline:
                raise UpdateConflict(
                    f"update of {key!r} lost {attempt} races with other writers in {budget:g}s"
                )
            # Jittered backoff, growing with each lost race, before reading again.
            yield call("sleep", jitter.get().uniform(0, min(0.0005 * 2**attempt, 0.05)))

    # Clearing ----------------------------------------------------------------------------

    def namespace_pattern(self, glob: str = "*") -> str:
        """A glob for the alias's keys (its ``KEY_PREFIX`` and ``VERSION``) matching ``glob``.

        The alias's own prefix is escaped, so only ``glob`` acts as a pattern.
        """
        marker = "\x00cache-tools-marker\x00"
        before, _, after = self.cache.make_key(marker).partition(marker)
        return _escape_glob(before) + glob + _escape_glob(after)

    def delete_matching(
        self,
        pattern: str,
        *,
        batch_size: int = 1000,
        dry_run: bool = False,
        progress: Callable[[ScanReport], None] | None = None,
    ) -> ScanReport:
        """SCAN (never KEYS) each server and UNLINK in batches of at most ``batch_size``,
        streaming."""
        report = ScanReport()
        with _translated(self.alias, self.errors):
            for server in self.servers():
                batch: list[bytes] = []
                for key in server.scan_iter(match=pattern, count=batch_size):
                    batch.append(key)
                    if len(batch) >= batch_size:
                        self._delete_batch(server, batch, report, dry_run)
                        batch = []
                        if progress:
                            progress(report)
                if batch:
                    self._delete_batch(server, batch, report, dry_run)
        return report

    def _delete_batch(
        self, server: Any, batch: list[bytes], report: ScanReport, dry_run: bool
    ) -> None:
        report.matched += len(batch)
        report.batches += 1
        report.largest_batch = max(report.largest_batch, len(batch))
        if not dry_run:
            report.deleted += self.unlink(server, batch)

    def servers(self) -> list[Any]:
        """Clients of every server that holds a share of the keys (a cluster's primaries)."""
        return [self.client()]

    def unlink(self, server: Any, keys: list[bytes]) -> int:
        """UNLINK ``keys`` (found on ``server``); the number deleted."""
        return int(server.unlink(*keys))

    def count_all(self) -> int:
        with _translated(self.alias, self.errors):
            return sum(int(server.dbsize()) for server in self.servers())


def _sync_operation(name: str) -> Callable[..., Any]:
    steps = getattr(RedisBackend, f"_{name}")

    def operation(self: RedisBackend, *args: Any, **kwargs: Any) -> Any:
        return drive(steps(self, *args, **kwargs), (self._connected or self._connect())[3])

    operation.__name__ = operation.__qualname__ = name
    operation.__doc__ = getattr(Backend, name).__doc__
    return operation


for _name in _OPERATIONS:
    setattr(RedisBackend, _name, _sync_operation(_name))
# The abstract methods are implemented by the loop above.
RedisBackend.__abstractmethods__ = frozenset(RedisBackend.__abstractmethods__ - set(_OPERATIONS))


class AsyncRedisBackend:
    """The async twin of a :class:`RedisBackend` on one event loop: the same operations, the
    same scripts and keys, run on a ``redis.asyncio`` client made from the sync client's own
    settings (host, port, db, password, TLS, socket timeouts)."""

    def __init__(self, backend: RedisBackend, client: Any) -> None:
        self.backend, self.client = backend, client
        self.alias = backend.alias
        self._target = _AsyncRedis(client, backend.alias, backend.errors)
        self._closed = False

    @property
    def max_wait(self) -> float:
        return self.backend.max_wait

    async def read(self, keys: EntryKeys) -> Fetched:
        try:
            envelope, generation = await self._target.wire.read_entry(keys, _envelope_check(keys))
        except self.backend.errors.base as exc:
            raise _translation(self.alias, exc, self.backend.errors) or exc from exc
        return _parse_entry(envelope, generation, self.backend._codec())

    async def aclose(self) -> None:
        """Close this loop's connections (done by itself when the loop shuts down)."""
        if not self._closed:
            self._closed = True
            await self.client.aclose(close_connection_pool=True)

    def close_with(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the connections when ``loop`` shuts down its async generators (the end of
        ``asyncio.run``, of asgiref's loops, of ASGI servers): an async generator started here
        is finalised by the loop itself, on the loop, while it still runs."""

        async def guard() -> AsyncIterator[None]:
            try:
                yield
            finally:
                await self.aclose()

        self._guard = guard()
        loop.create_task(self._guard.__anext__())  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name not in _OPERATIONS:
            raise AttributeError(name)
        steps = getattr(self.backend, f"_{name}")

        async def operation(*args: Any, **kwargs: Any) -> Any:
            return await adrive(steps(*args, **kwargs), self._target)

        operation.__name__ = name
        setattr(self, name, operation)  # made once per twin
        return operation


_SYNC_ONLY = frozenset(
    (
        "parser_class",
        "retry",
        "event_dispatcher",
        "redis_connect_func",
        "himport_registry",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "connection_pool_handler",
    )
)


def _async_client(client: Any, library: str, client_name: str) -> Any:
    """A client of ``library`` (``redis.asyncio``) with the sync client's connection settings,
    or None when its connections have no async twin there."""
    asyncio_library = importlib.import_module(library)
    async_connection = importlib.import_module(f"{library}.connection")
    pool = client.connection_pool
    connection_class = getattr(async_connection, pool.connection_class.__name__, None)
    if connection_class is None:
        return None
    accepted = set()
    for cls in connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            accepted |= set(inspect.signature(init).parameters)
    kwargs = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if name in accepted and name not in _SYNC_ONLY
    }
    # Blocking: a thousand coroutines reading at once queue for the pool's connections instead
    # of failing with "Too many connections" (which would look like an outage).
    async_pool = asyncio_library.BlockingConnectionPool(
        connection_class=connection_class,
        max_connections=getattr(pool, "max_connections", None) or 100,
        timeout=kwargs.get("socket_connect_timeout") or kwargs.get("socket_timeout") or 20,
        **kwargs,
    )
    return getattr(asyncio_library, client_name)(connection_pool=async_pool)


class DjangoRedisBackend(RedisBackend):
    """django-redis's ``RedisCache`` (its default client, and Sentinel/sharded clients that
    offer ``get_client``)."""

    def connect(self) -> tuple[redis.Redis, Codec]:
        inner = self.cache_client()
        return inner.get_client(write=True), client_codec(inner)


class BuiltinRedisBackend(RedisBackend):
    """Django's own ``django.core.cache.backends.redis.RedisCache``."""

    def cache_client(self) -> Any:
        return self.cache._cache  # type: ignore[attr-defined]

    def connect(self) -> tuple[redis.Redis, Codec]:
        inner = self.cache_client()
        serializer = inner._serializer
        return inner.get_client(write=True), Codec(serializer.dumps, serializer.loads)
