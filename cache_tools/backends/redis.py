"""Redis: django-redis's ``RedisCache`` and Django's built-in ``RedisCache``.

Every multi-key operation is one Lua script (:mod:`.redis_scripts`), so a lock acquire, a
release with its wake-up, a cache-aside miss that takes the entry's lock, and a store with its
release are each one round trip. Values inside cache-aside envelopes are encoded with the
alias's own serializer and compressor, like ``cache.set`` would.

Each operation is written once, as steps (:mod:`cache_tools.drive`) on a
:class:`~.redis_transport.Transport`; the sync adapter runs them on a
:class:`~.redis_transport.RedisIO`, its async twin (:class:`AsyncRedisBackend`) on an
:class:`~.redis_transport.AsyncRedisIO`. The two Django backends differ only in where their
client and codec live: each overrides :meth:`RedisBackend.connect`, the one hook a new
Redis-protocol backend needs.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import redis

from ..drive import Steps, adrive, drive
from .base import (
    AsyncBackend,
    Attempt,
    Backend,
    EntryKeys,
    Fetched,
    LockKeys,
    LockState,
    ScanReport,
    ServerKey,
    ThreadedTwin,
)
from .redis_clients import Codec, async_client, builtin_codec, client_codec, remember_pool
from .redis_errors import REDIS_ERRORS, ClientErrors, raise_translated, translated
from .redis_replies import fetched, lock_state, parse_entry
from .redis_scripts import envelope_check, milliseconds
from .redis_tracking import RedisFeed
from .redis_transport import AsyncRedisIO, RedisIO, Transport

__all__ = [
    "AsyncRedisBackend",
    "BuiltinRedisBackend",
    "ClientErrors",
    "Codec",
    "DjangoRedisBackend",
    "RedisBackend",
    "client_codec",
]

R = TypeVar("R")

#: Tags' versions bumped by one script (more take one round trip per this many).
TAGS_PER_SCRIPT = 1000
#: The longest single blocking wait (seconds), below half the client's socket timeout.
LONGEST_WAIT = 1.0
#: How long a lock handed to the waiter blocked longest waits for it to claim it (a live waiter
#: claims at once; one killed in that moment leaves the lock free after this).
CLAIM_SECONDS = 0.25


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class _Connected(NamedTuple):
    client: redis.Redis
    codec: Codec
    max_wait: float
    io: RedisIO


class RedisBackend(Backend):
    """The adapter for Redis-protocol caches; subclasses say where the client and codec are."""

    can_list_keys = True
    clear_is_global = True
    atomic_update = True
    tracking = True
    #: The exception classes of the client library :meth:`connect` returns a client of.
    errors: ClassVar[ClientErrors] = REDIS_ERRORS
    #: The client library's asyncio module and its client class.
    async_library: ClassVar[tuple[str, str]] = ("redis.asyncio", "Redis")

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._connected: _Connected | None = None
        self.transport = Transport(alias, self.errors)
        # The last loop's twin, checked first (a WeakKeyDictionary lookup makes a weakref).
        self._last_twin: tuple[weakref.ref[asyncio.AbstractEventLoop], Any] | None = None
        self._twins: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncRedisBackend | ThreadedTwin
        ] = weakref.WeakKeyDictionary()

    # The client --------------------------------------------------------------------------

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
        return connected.client, connected.codec

    def _connect(self) -> _Connected:
        client, codec = self.connect()
        remember_pool(client)
        socket_timeout = self.connection_settings(client).get("socket_timeout")
        longest = min(LONGEST_WAIT, socket_timeout / 2) if socket_timeout else LONGEST_WAIT
        self._connected = _Connected(client, codec, longest, self.io(client))
        return self._connected

    def connection_settings(self, client: Any) -> dict[str, Any]:
        """The keyword arguments the client's connections are made with."""
        return dict(client.connection_pool.connection_kwargs)

    def io(self, client: Any) -> RedisIO:
        """What the operations' steps run on (see :mod:`cache_tools.drive`)."""
        return RedisIO(client, self.errors)

    def client(self) -> redis.Redis:
        return (self._connected or self._connect()).client

    def codec(self) -> Codec:
        return (self._connected or self._connect()).codec

    def decode(self, payload: bytes | memoryview) -> Any:
        return self.codec().decode(payload)

    def _run(self, steps: Steps[R]) -> R:
        return drive(steps, (self._connected or self._connect()).io)

    def companion_key(self, base: ServerKey, suffix: str) -> ServerKey:
        # The lock's server key and the suffix, as the scripts name companions from the one
        # key they are given (fewer keys to send on every lock and cache-aside round trip).
        return ServerKey(base + suffix, base.name + suffix)

    def track(self, prefixes: Sequence[str]) -> RedisFeed:
        with translated(self.alias, self.errors):
            return RedisFeed(self.client(), prefixes)

    def asynchronous(self) -> AsyncBackend:
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

    def async_client(self) -> Any:
        """A new asyncio client with the sync client's connection settings, or None."""
        return async_client(self.client(), *self.async_library)

    # Locks -------------------------------------------------------------------------------

    @property
    def max_wait(self) -> float:
        return (self._connected or self._connect()).max_wait

    def _seen_ms(self) -> int:
        """How long a waiter counts as waiting after it last asked (dashboards): waiters ask
        again at least every ``max_wait``."""
        return round((2 * self.max_wait + 0.5) * 1000)

    def acquire(
        self,
        keys: LockKeys,
        token: str,
        ttl: float,
        register_waiter: bool,
        attempt: int = 0,
        ticket: str | None = None,
    ) -> Attempt:
        return self._run(self.acquire_steps(keys, token, ttl, register_waiter, attempt, ticket))

    def acquire_steps(
        self,
        keys: LockKeys,
        token: str,
        ttl: float,
        register_waiter: bool,
        attempt: int = 0,
        ticket: str | None = None,
    ) -> Steps[Attempt]:
        arguments = [
            token,
            milliseconds(ttl),
            int(register_waiter),
            ticket or "",
            self._seen_ms(),
            int(attempt > 0),
        ]
        number = yield from self.transport.script("lock_acquire", [keys.lock], arguments)
        if number > 0:
            return Attempt(number)
        return Attempt(None, (-1 - number) / 1000)

    def release(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> bool:
        return self._run(self.release_steps(keys, token, wake_all, uncacheable))

    def release_steps(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> Steps[bool]:
        wake = "hand" if keys.handover else "all" if wake_all else "one"
        later = milliseconds(uncacheable) if uncacheable else 0
        arguments = [token, wake, milliseconds(CLAIM_SECONDS), later]
        return bool((yield from self.transport.script("lock_release", [keys.lock], arguments)))

    def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        return self._run(self.extend_steps(keys, token, ttl))

    def extend_steps(self, keys: LockKeys, token: str, ttl: float) -> Steps[bool]:
        arguments = [token, milliseconds(ttl)]
        return bool((yield from self.transport.script("lock_extend", [keys.lock], arguments)))

    def owner(self, keys: LockKeys) -> str | None:
        return self._run(self.owner_steps(keys))

    def owner_steps(self, keys: LockKeys) -> Steps[str | None]:
        token = yield from self.transport.script("lock_owner", [keys.lock], [])
        return None if token is None else token.decode()

    def wait(self, keys: LockKeys, timeout: float) -> str | None:
        return self._run(self.wait_steps(keys, timeout))

    def wait_steps(self, keys: LockKeys, timeout: float) -> Steps[str | None]:
        # BLPOP takes seconds with millisecond precision (Redis >= 6); 0 would mean forever.
        popped = yield from self.transport.command("BLPOP", keys.signal, max(timeout, 0.001))
        return None if popped is None else popped[1].decode()

    def exists(self, key: ServerKey) -> bool:
        return bool(self._run(self.transport.command("EXISTS", key)))

    def delete(self, key: ServerKey) -> bool:
        return bool(self._run(self.transport.command("DEL", key)))

    def eviction_policy(self) -> str | None:
        """From ``INFO memory`` (which managed services that disable ``CONFIG`` still allow);
        of several servers (a cluster's primaries), one that evicts if any does."""
        policies = set()
        with translated(self.alias, self.errors):
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
        with translated(self.alias, self.errors):
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
        return [lock_state(replies[i * 5 : i * 5 + 5], seconds, micros) for i in range(len(keys))]

    # Cache-aside -------------------------------------------------------------------------

    def read(self, keys: EntryKeys) -> Fetched:
        connected = self._connected or self._connect()
        try:
            reply = connected.io.wire.read_entry(keys, envelope_check(keys))
        except self.errors.base as exc:
            raise_translated(self.alias, exc, self.errors)
        return parse_entry(reply, connected.codec)

    def fetch(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Fetched:
        return self._run(self.fetch_steps(keys, token, lock_ttl, recompute))

    def fetch_steps(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Steps[Fetched]:
        # Waiter registrations outlive the lock by two of the longest blocking waits.
        grace = milliseconds(2 * self.max_wait)
        arguments = [token or "", milliseconds(lock_ttl), int(recompute), grace]
        entry_keys = [keys.value, keys.generation, keys.lock.lock, *keys.generations[1:]]
        reply = yield from self.transport.script("aside_fetch", entry_keys, arguments)
        return fetched(reply, self.codec())

    def store(
        self,
        keys: EntryKeys,
        value: Any,
        *,
        timeout: float | None,
        stale: float,
        generation: int | None,
        token: str | None = None,
        fence: int | None = None,
    ) -> bool:
        steps = self.store_steps(keys, value, timeout, stale, generation, token, fence)
        return self._run(steps)

    def store_steps(
        self,
        keys: EntryKeys,
        value: Any,
        timeout: float | None,
        stale: float,
        generation: int | None,
        token: str | None,
        fence: int | None,
    ) -> Steps[bool]:
        fresh_ms = 0 if timeout is None or not stale else milliseconds(timeout)
        ttl_ms = 0 if timeout is None else milliseconds(timeout + stale)
        arguments: list[Any] = [
            self.codec().encode(value),
            fresh_ms,
            ttl_ms,
            "" if generation is None else generation,
            token or "",
            fence or 0,
        ]
        entry_keys = [keys.value, keys.generation, keys.lock.lock, *keys.generations[1:]]
        return bool((yield from self.transport.script("aside_store", entry_keys, arguments)))

    def invalidate(self, keys: EntryKeys) -> bool:
        return self._run(self.invalidate_steps(keys))

    def invalidate_steps(self, keys: EntryKeys) -> Steps[bool]:
        entry_keys = [keys.value, keys.lock.lock]
        return bool((yield from self.transport.script("aside_invalidate", entry_keys, [])))

    def bump_generation(self, generation_key: ServerKey, ttl: float | None = None) -> int:
        return self._run(self.bump_generation_steps(generation_key))

    def bump_generation_steps(self, generation_key: ServerKey) -> Steps[int]:
        return int((yield from self.transport.script("generation_bump", [generation_key], [])))

    def bump_tags(self, keys: Sequence[ServerKey]) -> None:
        self._run(self.bump_tags_steps(keys))

    def bump_tags_steps(self, keys: Sequence[ServerKey]) -> Steps[None]:
        # One script per TAGS_PER_SCRIPT tags: a transaction that wrote a million rows does not
        # send one command of a million keys (nor hold the server that long).
        for start in range(0, len(keys), TAGS_PER_SCRIPT):
            batch = list(keys[start : start + TAGS_PER_SCRIPT])
            yield from self.transport.script("tags_bump", batch, [])

    # Statistics --------------------------------------------------------------------------

    def add_counts(
        self, counts: Mapping[ServerKey, Mapping[str, int]], ttl: float | None = None
    ) -> set[ServerKey]:
        """One pipeline of ``HINCRBY`` (only the statistics flusher, a thread, calls this)."""
        sent: list[tuple[ServerKey, int | None]] = []  # (key, increment; None: the PEXPIRE)
        with translated(self.alias, self.errors):
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

    def read_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> dict[str, int]:
        return self.read_counts_many([stats_key], fields)[0]

    def read_counts_many(
        self, stats_keys: Sequence[ServerKey], fields: tuple[str, ...]
    ) -> list[dict[str, int]]:
        with translated(self.alias, self.errors):
            pipe = self.client().pipeline(transaction=False)
            for stats_key in stats_keys:
                pipe.hmget(stats_key, fields)
            rows = pipe.execute()
        return [
            {field: int(number or 0) for field, number in zip(fields, row, strict=True)}
            for row in rows
        ]

    def delete_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> None:
        self.delete(stats_key)

    def note_names(
        self,
        registry: ServerKey,
        names: Mapping[str, float],
        keep: int,
        max_age: float | None = None,
    ) -> None:
        with translated(self.alias, self.errors):
            pipe = self.client().pipeline(transaction=False)
            pipe.zadd(registry, dict(names))
            pipe.zremrangebyrank(registry, 0, -keep - 1)
            if max_age is not None:
                pipe.zremrangebyscore(registry, "-inf", f"({max(names.values()) - max_age}")
                pipe.expire(registry, int(max_age) + 1)
            pipe.execute()

    def read_names(self, registry: ServerKey) -> dict[str, float]:
        with translated(self.alias, self.errors):
            found: Any = self.client().zrange(registry, 0, -1, withscores=True)
        return {
            name.decode() if isinstance(name, bytes) else name: float(when) for name, when in found
        }

    def has_names(self, registry: ServerKey) -> bool:
        return self.exists(registry)

    def add_lock_counts(
        self,
        counts: Mapping[str, Mapping[str, int]],
        fields: tuple[str, ...],
        keep: int,
        max_age: float,
        kind: str = "locks",
    ) -> None:
        """One script (only the statistics flusher, a thread, calls this)."""
        arguments: list[Any] = [keep, max_age, ",".join(fields)]
        for name, added in counts.items():
            for field, amount in added.items():
                arguments += [name, field, amount]
        keys = [self.lock_counts_key(kind), self.registry_key(kind)]
        self._run(self.transport.script("lock_counts", keys, arguments))

    def read_lock_counts(
        self, fields: tuple[str, ...], names: Sequence[str] | None = None, kind: str = "locks"
    ) -> dict[str, dict[str, int]]:
        with translated(self.alias, self.errors):
            client = self.client()
            if names is None:
                found: list[bytes] = client.zrange(self.registry_key(kind), 0, -1)  # type: ignore[assignment]
                names = [name.decode() for name in found]
            wanted = [f"{field}:{name}" for name in names for field in fields]
            numbers = client.hmget(self.lock_counts_key(kind), wanted) if wanted else []
        width = len(fields)
        return {
            name: {
                field: int(number or 0)
                for field, number in zip(fields, numbers[i * width : (i + 1) * width], strict=True)
            }
            for i, name in enumerate(names)
        }

    # Atomic read-modify-write ------------------------------------------------------------

    def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Any:
        return self._run(self.update_steps(key, function, timeout, budget))

    def update_steps(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Steps[Any]:
        px = None if timeout is None else milliseconds(timeout)
        return self.transport.update(self._make(key), function, self.codec(), px, budget)

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
        with translated(self.alias, self.errors):
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
        with translated(self.alias, self.errors):
            return sum(int(server.dbsize()) for server in self.servers())


class AsyncRedisBackend:
    """The async twin of a :class:`RedisBackend` on one event loop (an
    :class:`~cache_tools.backends.base.AsyncBackend`): the same steps, scripts and keys, run on
    a ``redis.asyncio`` client made from the sync client's own settings (host, port, db,
    password, TLS, socket timeouts)."""

    def __init__(self, backend: RedisBackend, client: Any) -> None:
        self.backend, self.client = backend, client
        self.alias = backend.alias
        self._io = AsyncRedisIO(client, backend.errors)
        self._closed = False

    @property
    def max_wait(self) -> float:
        return self.backend.max_wait

    async def _run(self, steps: Steps[R]) -> R:
        return await adrive(steps, self._io)

    async def acquire(
        self,
        keys: LockKeys,
        token: str,
        ttl: float,
        register_waiter: bool,
        attempt: int = 0,
        ticket: str | None = None,
    ) -> Attempt:
        steps = self.backend.acquire_steps(keys, token, ttl, register_waiter, attempt, ticket)
        return await self._run(steps)

    async def release(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> bool:
        return await self._run(self.backend.release_steps(keys, token, wake_all, uncacheable))

    async def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        return await self._run(self.backend.extend_steps(keys, token, ttl))

    async def owner(self, keys: LockKeys) -> str | None:
        return await self._run(self.backend.owner_steps(keys))

    async def wait(self, keys: LockKeys, timeout: float) -> str | None:
        return await self._run(self.backend.wait_steps(keys, timeout))

    async def read(self, keys: EntryKeys) -> Fetched:
        backend = self.backend
        try:
            reply = await self._io.wire.read_entry(keys, envelope_check(keys))
        except backend.errors.base as exc:
            raise_translated(self.alias, exc, backend.errors)
        return parse_entry(reply, backend.codec())

    async def fetch(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Fetched:
        return await self._run(self.backend.fetch_steps(keys, token, lock_ttl, recompute))

    async def store(
        self,
        keys: EntryKeys,
        value: Any,
        *,
        timeout: float | None,
        stale: float,
        generation: int | None,
        token: str | None = None,
        fence: int | None = None,
    ) -> bool:
        steps = self.backend.store_steps(keys, value, timeout, stale, generation, token, fence)
        return await self._run(steps)

    async def invalidate(self, keys: EntryKeys) -> bool:
        return await self._run(self.backend.invalidate_steps(keys))

    async def bump_generation(self, generation_key: ServerKey, ttl: float | None = None) -> int:
        return await self._run(self.backend.bump_generation_steps(generation_key))

    async def bump_tags(self, keys: Sequence[ServerKey]) -> None:
        await self._run(self.backend.bump_tags_steps(keys))

    async def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Any:
        return await self._run(self.backend.update_steps(key, function, timeout, budget))

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
        return inner.get_client(write=True), builtin_codec(inner._serializer)
