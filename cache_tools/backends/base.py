"""The backend contract: every operation that locks, the engine and the commands need.

Each backend family implements :class:`Backend` once (an *adapter*); nothing above this package
looks at cache classes or ``BACKEND`` strings, it asks the adapter's capability flags instead.

Key layout (shown without the alias's ``KEY_PREFIX``/``VERSION`` and with the default
``CACHE_TOOLS["NAMESPACE"]``, ``ct``)::

    ct:lock:{name}          lock taken by lock() / lock_decorator, with companions
    ct:lock:{name}#s        release signal list (waiters block on it; for locks, the ticket
                            of a hand-over to the waiter blocked longest)
    ct:lock:{name}#f        fencing counter
    ct:lock:{name}#w        number of registered waiters (cache-aside entry locks)
    ct:lock:{name}#q        the tokens seen waiting recently (locks; for dashboards)
    ct:l:{func}:<args>#n    set for a second when a result could not be stored: callers
                            compute without waiting for each other meanwhile
    ct:v:{func}:<args>      cache_aside entry (envelope: generation, soft expiry, value)
    ct:l:{func}:<args>      single-flight lock of that entry (same companions)
    ct:g:{func}             generation of the function (invalidate_all)
    ct:g:{func}:<scope>     generation of a part of it (a view's path), when it has one
    ct:t:<tag>              version of a tag (ct:t:{func}:<tag> on a cluster: per function)
    ct:s:{func}             statistics of the function
    ct:s:{func}:m<minute>   its counts in one minute (expire after an hour: the charts)
    ct:s:{*}:m<minute>      every function's counts in one minute, summed (the charts)
    ct:r:{functions}        the functions processes have used, with when
    ct:r:{locks}            the locks used in the last hour, with when: at most the 1 000
    ct:lc:{locks}           most recent (lock names can be as many as the objects they
                            guard), and their counts (``acquired:<name>``, ...)

The part in braces is a Redis Cluster hash tag, so each script's keys share a slot. Keys made
by :mod:`cache_tools.keys` never contain ``{``, ``}`` or ``#``, so these names cannot collide.

Every key an adapter hands out is a :class:`ServerKey`: a string equal to the key as the cache
server stores it (``KEY_PREFIX`` and ``VERSION`` applied), which also remembers the name it was
made from (``.name``), for adapters that talk through Django's cache API.
"""

from __future__ import annotations

import abc
import asyncio
import codecs
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, ParamSpec, Protocol, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import BaseCache, caches
from django.core.cache.backends.base import default_key_func

from .. import conf
from ..keys import fit_length, normalise, safe_key
from .records import (
    HIT,
    MISS,
    STALE,
    Attempt,
    EntryKeys,
    Fetched,
    LockKeys,
    LockState,
    ScanReport,
    ServerKey,
    holder_of,
)

__all__ = [
    "HIT",
    "MISS",
    "STALE",
    "AsyncBackend",
    "Attempt",
    "Backend",
    "EntryKeys",
    "Fetched",
    "InvalidationFeed",
    "LockKeys",
    "LockState",
    "ScanReport",
    "ServerKey",
    "ThreadedTwin",
]

P = ParamSpec("P")
R = TypeVar("R")


class Backend(abc.ABC):
    """Capabilities of one cache alias. Methods raise ``BackendUnavailable`` on an outage and
    ``StoreRefused`` when the server answers but will not keep a value.

    To support a new cache class, subclass :class:`Backend` (or
    :class:`~cache_tools.backends.generic.CacheAPIBackend`, which needs only Django's cache
    API) and name it in ``CACHE_TOOLS["ADAPTERS"]``; run the contract suite of
    :mod:`cache_tools.testing` on it.
    """

    #: False for backends whose state lives in one process (locks do not hold across workers).
    shared: ClassVar[bool] = True
    #: False where a lock could never exclude anything (DummyCache).
    locks: ClassVar[bool] = True
    #: False where nothing is stored at all (DummyCache): there is nothing to clear.
    stores: ClassVar[bool] = True
    #: True when ``clear_cache`` can list the alias's keys (SCAN); otherwise it bumps a
    #: namespace generation that makes every cache_tools entry unreachable.
    can_list_keys: ClassVar[bool] = False
    #: True when ``cache.clear()`` empties a server that other applications may share.
    clear_is_global: ClassVar[bool] = False
    #: True when :meth:`update` is atomic on the server (optimistic, no lock).
    atomic_update: ClassVar[bool] = False
    #: True when the server can tell every process that keys changed (Redis client
    #: tracking), so that processes may keep copies of entries (``cache_aside(local=...)``).
    tracking: ClassVar[bool] = False
    #: ``make_key`` methods that apply Django's ``key_func`` to (key, ``KEY_PREFIX``,
    #: ``VERSION``) and nothing else: with the default key function, keys are concatenated
    #: here instead of calling ``make_key`` on every use.
    plain_make_keys: ClassVar[tuple[Callable[..., Any], ...]] = (BaseCache.make_key,)
    #: Longest key the server accepts, ``KEY_PREFIX`` included (None: no limit that matters).
    max_key_length: ClassVar[int | None] = None

    def __init__(self, alias: str) -> None:
        self.alias = alias
        # Key names depend only on settings, and an adapter lives until settings change.
        self.lock_keys = functools.lru_cache(maxsize=4096)(self._lock_keys)
        self.entry_keys = functools.lru_cache(maxsize=16384)(self._entry_keys)
        self._function_keys = functools.lru_cache(maxsize=4096)(self._keys_of_function)
        self._prefix: str | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.alias!r}>"

    @property
    def cache(self) -> BaseCache:
        # Looked up on every use: Django's caches are per thread, and never cached across fork.
        return caches[self.alias]

    def prepare(self) -> None:
        """Import, in the calling thread, what the alias's first command would import, without
        connecting: called for every alias at start-up (``AppConfig.ready``). A process that
        forks (uWSGI, gunicorn ``--preload``) while another of its threads makes its first
        cache call would otherwise give the child a module imported halfway, for good.

        The default makes the alias's Django cache object and looks up the codec Python's
        socket module imports at a first connection; override to make the client too.

        >>> get_backend("default").prepare()
        """
        caches[self.alias]  # made, and its class's module imported, on first access
        codecs.lookup("idna")

    # Keys --------------------------------------------------------------------------------

    def _make(self, name: str) -> str:
        """``cache.make_key(name)``; with Django's default key function, a concatenation."""
        prefix = self._prefix
        if prefix is None:
            cache = self.cache
            plain = type(cache).make_key in self.plain_make_keys
            if cache.key_func is default_key_func and plain:
                prefix = self._prefix = f"{cache.key_prefix}:{cache.version}:"
            else:
                return cache.make_key(name)
        return prefix + name

    def server_key(self, name: str, reserve: int = 0) -> ServerKey:
        """The key the server stores for ``name`` (``KEY_PREFIX``/``VERSION`` applied), made
        to fit ``max_key_length`` with ``reserve`` characters to spare for companion suffixes."""
        full = self._make(name)
        limit = self.max_key_length
        if limit is not None and len(full) + reserve > limit:
            name = fit_length(name, len(name) - (len(full) + reserve - limit))
            full = self._make(name)
        return ServerKey(full, name)

    def _name(self, kind: str, tag: str, rest: str = "") -> str:
        return f"{conf.namespace()}:{kind}:{{{tag}}}{rest}"

    def companion_key(self, base: ServerKey, suffix: str) -> ServerKey:
        """The key of a lock's companion (``#f`` fence, ``#s`` signal, ...)."""
        return self.server_key(f"{base.name}{suffix}")

    def _lock_keys(self, name: str) -> LockKeys:
        """The keys of the lock called ``name`` (already made safe by :func:`keys.safe_key`)."""
        return LockKeys(self, self.server_key(self._name("lock", name), reserve=2), True)

    def _entry_keys(
        self,
        function_id: str,
        argument_key: str,
        version: Any = None,
        scope: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> EntryKeys:
        """The keys of one cache-aside entry. ``scope`` names a part of the function with a
        generation of its own (a view's path), invalidated apart from the rest; ``tags``
        (sorted, distinct) name versions it is also voided by."""
        rest = f":{argument_key}" if version is None else f":v{normalise(version)}:{argument_key}"
        generation, stats = self._function_keys(function_id, scope)
        value = self.server_key(self._name("v", function_id, rest))
        tag_keys = tuple(self.tag_key(tag, function_id) for tag in tags)
        return EntryKeys(self, value, generation, stats, tags, tag_keys)

    #: Whether a tag's version is kept once per function that uses it (in the function's
    #: slot, so that an entry's keys stay in one: a cluster) rather than once per alias.
    tags_per_function = False

    def tag_key(self, tag: str, function_id: str) -> ServerKey:
        """The key of a tag's version, as the entries of ``function_id`` read it."""
        name = safe_key(tag)
        if self.tags_per_function:
            return self.server_key(self._name("t", function_id, f":{name}"))
        return self.server_key(f"{conf.namespace()}:t:{name}")

    def tag_keys(self, tags: Iterable[str], function_ids: Iterable[str] = ()) -> list[ServerKey]:
        """The keys to bump to invalidate ``tags``: one per tag, or one per tag and function
        (``function_ids``: those that may carry them) where tags are kept per function."""
        tags = sorted(set(tags))
        if not self.tags_per_function:
            return [self.tag_key(tag, "") for tag in tags]
        return [self.tag_key(tag, function) for tag in tags for function in set(function_ids)]

    def bump_tags(self, keys: Sequence[ServerKey]) -> None:
        """Increment each existing tag version in ``keys`` (a missing one needs nothing: it
        starts again above every value it had). One round trip where the server allows."""
        for key in keys:
            self.bump_generation(key)

    def entry_lock_keys(self, value: ServerKey) -> LockKeys:
        """The single-flight lock of the entry stored at ``value``."""
        namespace = conf.namespace()
        name = f"{namespace}:l:{value.name[len(namespace) + 3 :]}"  # for "<namespace>:v:"
        return LockKeys(self, self.server_key(name, reserve=2))

    def _keys_of_function(self, function_id: str, scope: str | None) -> tuple[ServerKey, ServerKey]:
        generation = self._name("g", function_id, "" if scope is None else f":{scope}")
        return self.server_key(generation), self.stats_key(function_id)

    def stats_key(self, function_id: str) -> ServerKey:
        return self.server_key(self._name("s", function_id))

    def function_of(self, stats_key: ServerKey) -> str | None:
        """The function whose statistics ``stats_key`` holds (None for a lock's)."""
        head, name = f"{conf.namespace()}:s:{{", stats_key.name
        return name[len(head) : -1] if name.startswith(head) and name.endswith("}") else None

    def minute_key(self, stats_key: ServerKey, minute: int) -> ServerKey:
        """The key of one minute's counts of a function (``minute``: Unix time // 60)."""
        return self.companion_key(stats_key, f":m{minute}")

    def lock_counts_key(self, kind: str = "locks") -> ServerKey:
        """Where the counts of the names in the registry of ``kind`` (``"locks"``, or
        ``"tags"``: their invalidations) are kept."""
        return self.server_key(self._name("lc", kind))

    def registry_key(self, kind: str) -> ServerKey:
        """Where processes note the ``"functions"`` or ``"locks"`` they use."""
        return self.server_key(self._name("r", kind))

    def generation_key(self, function_id: str, scope: str | None = None) -> ServerKey:
        """The key of a function's generation, or of one ``scope``'s of it."""
        return self._function_keys(function_id, scope)[0]

    # Locks -------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def max_wait(self) -> float:
        """Longest single blocking wait, in seconds (below the client's socket timeout)."""

    @abc.abstractmethod
    def acquire(
        self,
        keys: LockKeys,
        token: str,
        ttl: float,
        register_waiter: bool,
        attempt: int = 0,
        ticket: str | None = None,
    ) -> Attempt:
        """Try once; with the ``ticket`` :meth:`wait` returned, claim the lock handed to this
        waiter. Returns the fence when taken, else how long to wait before trying again: the
        holder's remaining TTL where a release signal wakes waiters, else a poll delay growing
        with ``attempt``. ``register_waiter``: count this token among the waiters."""

    @abc.abstractmethod
    def release(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> bool:
        """Release if ``token`` holds the lock: hand it to the waiter waiting longest (where
        ``keys.handover``), or wake one (or all) waiters; False if not ours. ``uncacheable``
        (seconds, cache-aside entries): the computation's result could not be stored, so for
        that long :meth:`fetch` lets every caller compute without the lock instead of queueing
        each behind the last."""

    @abc.abstractmethod
    def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        """Give the lock a new TTL if ``token`` still holds it."""

    @abc.abstractmethod
    def owner(self, keys: LockKeys) -> str | None:
        """The token that holds the lock now, as the server says (None when free)."""

    @abc.abstractmethod
    def wait(self, keys: LockKeys, timeout: float) -> str | None:
        """Block until a release signal or ``timeout`` seconds; what the signal carried (for a
        lock handed over, the ticket to claim it with), or None when none came."""

    @abc.abstractmethod
    def exists(self, key: ServerKey) -> bool: ...

    def waiters(self, keys: LockKeys) -> int | None:
        """Waiters registered on a held lock, where the backend knows (None otherwise)."""
        return None

    def lock_states(self, keys: Sequence[LockKeys]) -> list[LockState]:
        """:meth:`lock_state` of several locks, in one round trip where possible."""
        return [self.lock_state(lock_keys) for lock_keys in keys]

    def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy`` (``noeviction`` when it never drops a key to make
        room), or None where the backend cannot say. Connects: for deployment checks and a
        one-time warning, never on a hot path."""
        return None

    def lock_state(self, keys: LockKeys) -> LockState:
        """Whether the lock is held, since when, its fence and its waiters (dashboards)."""
        token = self.owner(keys)
        return LockState(token is not None, holder_of(token), waiters=self.waiters(keys))

    # Cache-aside -------------------------------------------------------------------------

    @abc.abstractmethod
    def read(self, keys: EntryKeys) -> Fetched:
        """Read an entry in one round trip, taking no lock (the hit path)."""

    @abc.abstractmethod
    def fetch(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Fetched:
        """Read an entry; with ``token``, take the entry's lock on a miss or a stale hit
        (registering as a waiter when another caller holds it), unless a recent result could
        not be stored (see :meth:`release`: then a miss with neither ``fence`` nor ``wait``).
        With ``recompute``, take it on a fresh hit too, or wait for it like on a miss
        (``refresh()``)."""

    @abc.abstractmethod
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
        """Write an entry fresh for ``timeout`` and served stale ``stale`` seconds more, and
        release the lock held by ``token``, waking all waiters.

        Nothing is written (returns False) when the function's generation moved on from
        ``generation`` (None: the current one) or, with a ``token``, when the entry's fence moved
        on (invalidated or taken over meanwhile). Raises ``StoreRefused`` (with the lock left
        held; the caller releases it) when the value cannot be serialised or the server will
        not keep it.
        """

    @abc.abstractmethod
    def invalidate(self, keys: EntryKeys) -> bool:
        """Delete the entry and void any computation of it in flight; True if one was there."""

    @abc.abstractmethod
    def bump_generation(self, generation_key: ServerKey, ttl: float | None = None) -> int:
        """Increment a generation; with ``ttl``, keep it at least that many seconds (entries it
        guards cannot outlive it, so it may then expire and restart from 0)."""

    @abc.abstractmethod
    def add_counts(
        self, counts: Mapping[ServerKey, Mapping[str, int]], ttl: float | None = None
    ) -> set[ServerKey]:
        """Add to several statistics at once: ``{stats_key: {field: amount}}``; with ``ttl``,
        counts no one adds to for that many seconds expire. Returns the statistics keys whose
        every added field started from zero: new to the server, or forgotten by it (cleared,
        evicted, expired, a restart), so that callers can tell the registries again."""

    @abc.abstractmethod
    def read_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> dict[str, int]:
        """The counts of ``fields`` (0 where never counted)."""

    def read_counts_many(
        self, stats_keys: Sequence[ServerKey], fields: tuple[str, ...]
    ) -> list[dict[str, int]]:
        """:meth:`read_counts` of several statistics, in one round trip where possible."""
        return [self.read_counts(stats_key, fields) for stats_key in stats_keys]

    @abc.abstractmethod
    def note_names(
        self,
        registry: ServerKey,
        names: Mapping[str, float],
        keep: int,
        max_age: float | None = None,
    ) -> None:
        """Record ``{name: when}`` (Unix time) in a registry, keeping the ``keep`` most recent
        and, with ``max_age``, only those noted in the last ``max_age`` seconds."""

    @abc.abstractmethod
    def read_names(self, registry: ServerKey) -> dict[str, float]:
        """A registry's names and when each was last noted."""

    def has_names(self, registry: ServerKey) -> bool:
        """Whether the server still has ``registry`` (eviction may take it alone; the
        statistics flusher then notes its names again). Reads it unless overridden."""
        return bool(self.read_names(registry))

    @abc.abstractmethod
    def delete_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> None: ...

    @abc.abstractmethod
    def add_lock_counts(
        self,
        counts: Mapping[str, Mapping[str, int]],
        fields: tuple[str, ...],
        keep: int,
        max_age: float,
        kind: str = "locks",
    ) -> None:
        """Add to the counts of locks by name (``{name: {field: amount}}``) and note each
        name in the registry of locks, which keeps the ``keep`` most recently used names, none
        older than ``max_age`` seconds: a forgotten name's counts (every one of ``fields``)
        go with it. So the server keeps a bounded record however many names there are.
        ``kind="tags"`` keeps tags' invalidation counts the same way."""

    @abc.abstractmethod
    def read_lock_counts(
        self, fields: tuple[str, ...], names: Sequence[str] | None = None, kind: str = "locks"
    ) -> dict[str, dict[str, int]]:
        """The counts of ``names`` (0 where never counted), or of every lock in the registry
        (``names`` None)."""

    @abc.abstractmethod
    def delete(self, key: ServerKey) -> bool: ...

    # Atomic read-modify-write ------------------------------------------------------------

    def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Any:
        """Apply ``function`` to the value ``cache.get(key)`` reads, without losing updates;
        ``UpdateConflict`` once ``budget`` seconds passed without success. Only where
        ``atomic_update``; elsewhere ``update()`` takes a lock around a get and a set."""
        raise NotImplementedError(f"{self!r} has no atomic read-modify-write")

    def read_value(self, key: str) -> Any:
        """``cache.get(key)``, for ``update()`` under a lock where it is not atomic."""
        raise NotImplementedError

    def write_value(self, key: str, value: Any, timeout: float | None) -> None:
        """``cache.set(key, value, timeout)``, for ``update()`` under a lock."""
        raise NotImplementedError

    # Clearing ----------------------------------------------------------------------------

    def namespace_pattern(self, glob: str = "*") -> str:
        """A glob for the alias's keys (its ``KEY_PREFIX`` and ``VERSION``) matching ``glob``;
        only where ``can_list_keys``."""
        raise NotImplementedError(f"{self!r} cannot list its keys")

    def delete_matching(
        self,
        pattern: str,
        *,
        batch_size: int = 1000,
        dry_run: bool = False,
        progress: Callable[[ScanReport], None] | None = None,
    ) -> ScanReport:
        """Delete the keys matching ``pattern`` in bounded batches; only where
        ``can_list_keys``."""
        raise NotImplementedError(f"{self!r} cannot list its keys")

    def count_all(self) -> int | None:
        """How many keys ``cache.clear()`` would delete, where the server can say."""
        return None

    def bump_namespace(self) -> int:
        """Make every cache_tools entry of this alias unreachable in O(1); only where keys
        cannot be listed."""
        raise NotImplementedError(f"{self!r} lists its keys; delete them instead")

    def flush(self) -> None:
        """``cache.clear()``: everything the cache holds, other applications' keys included
        where ``clear_is_global``."""
        self.cache.clear()

    # Per-process copies ------------------------------------------------------------------

    def decode(self, payload: bytes | memoryview) -> Any:
        """A value from the bytes :attr:`Fetched.payload` held (where ``tracking``)."""
        raise NotImplementedError(f"{self!r} keeps no copies")

    def track(self, prefixes: Sequence[str]) -> InvalidationFeed:
        """Open a feed of the server's word that keys starting with one of ``prefixes``
        changed (where ``tracking``), for this process's copies of entries."""
        raise NotImplementedError(f"{self!r} cannot track keys")

    # Async -------------------------------------------------------------------------------

    def asynchronous(self) -> AsyncBackend:
        """The async twin of this adapter for the running event loop: the same operations as
        coroutines. Here each one runs in a worker thread and waits sleep on the loop; the
        Redis adapters override this with a native ``redis.asyncio`` twin."""
        return ThreadedTwin(self)


class InvalidationFeed(abc.ABC):
    """The server's word that keys changed (:meth:`Backend.track`), read by one listener
    thread per process and alias.

    >>> feed = backend.track(["ct:v:", "ct:g:"])
    >>> if feed.wait(0.5):
    ...     for keys in feed.read():   # a list of changed keys, or None: everything
    ...         drop(keys)
    """

    #: Descriptors that turn readable as soon as an invalidation may be pending or the feed
    #: broke (the server closed it): polled, with no timeout, before a copy is served.
    sockets: tuple[int, ...] = ()

    @abc.abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for something to read; True when there is."""

    @abc.abstractmethod
    def read(self) -> Iterator[list[bytes] | None]:
        """Every invalidation unread now: the keys that changed, or None for all of them (the
        server was flushed). Raises when the feed broke."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise unless the server answers on the feed now (a silent network loss shows no
        closing)."""

    @abc.abstractmethod
    def close(self) -> None: ...


class AsyncBackend(Protocol):
    """The async half of the contract, for one event loop (:meth:`Backend.asynchronous`): the
    operations the engine and locks run from async code, with the sync methods' names,
    parameters and results, as coroutines."""

    @property
    def max_wait(self) -> float: ...

    async def acquire(
        self,
        keys: LockKeys,
        token: str,
        ttl: float,
        register_waiter: bool,
        attempt: int = 0,
        ticket: str | None = None,
    ) -> Attempt: ...

    async def release(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> bool: ...

    async def extend(self, keys: LockKeys, token: str, ttl: float) -> bool: ...

    async def owner(self, keys: LockKeys) -> str | None: ...

    async def wait(self, keys: LockKeys, timeout: float) -> str | None: ...

    async def read(self, keys: EntryKeys) -> Fetched: ...

    async def fetch(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Fetched: ...

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
    ) -> bool: ...

    async def invalidate(self, keys: EntryKeys) -> bool: ...

    async def bump_generation(self, generation_key: ServerKey, ttl: float | None = None) -> int: ...

    async def bump_tags(self, keys: Sequence[ServerKey]) -> None: ...

    async def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Any: ...


class ThreadedTwin:
    """An :class:`AsyncBackend` that runs a sync adapter's operations in worker threads. Waits
    sleep on the loop unless ``blocking_wait`` (a backend whose wait blocks on a server
    signal, which then runs in a thread too)."""

    def __init__(self, backend: Backend, blocking_wait: bool = False) -> None:
        self.backend, self.alias = backend, backend.alias
        self.blocking_wait = blocking_wait

    @property
    def max_wait(self) -> float:
        return self.backend.max_wait

    async def acquire(
        self,
        keys: LockKeys,
        token: str,
        ttl: float,
        register_waiter: bool,
        attempt: int = 0,
        ticket: str | None = None,
    ) -> Attempt:
        acquire = self.backend.acquire
        return await _in_thread(acquire, keys, token, ttl, register_waiter, attempt, ticket)

    async def release(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> bool:
        return await _in_thread(self.backend.release, keys, token, wake_all, uncacheable)

    async def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        return await _in_thread(self.backend.extend, keys, token, ttl)

    async def owner(self, keys: LockKeys) -> str | None:
        return await _in_thread(self.backend.owner, keys)

    async def wait(self, keys: LockKeys, timeout: float) -> str | None:
        if self.blocking_wait:
            return await _in_thread(self.backend.wait, keys, timeout)
        await asyncio.sleep(max(timeout, 0.001))  # polling backends: no signal to block on
        return None

    async def read(self, keys: EntryKeys) -> Fetched:
        return await _in_thread(self.backend.read, keys)

    async def fetch(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Fetched:
        return await _in_thread(self.backend.fetch, keys, token, lock_ttl, recompute)

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
        return await _in_thread(
            functools.partial(
                self.backend.store,
                timeout=timeout,
                stale=stale,
                generation=generation,
                token=token,
                fence=fence,
            ),
            keys,
            value,
        )

    async def invalidate(self, keys: EntryKeys) -> bool:
        return await _in_thread(self.backend.invalidate, keys)

    async def bump_generation(self, generation_key: ServerKey, ttl: float | None = None) -> int:
        return await _in_thread(self.backend.bump_generation, generation_key, ttl)

    async def bump_tags(self, keys: Sequence[ServerKey]) -> None:
        await _in_thread(self.backend.bump_tags, keys)

    async def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Any:
        return await _in_thread(self.backend.update, key, function, timeout, budget)


async def _in_thread(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)`` in a worker thread (not the one thread-sensitive code
    shares: these are independent server requests)."""
    return await sync_to_async(function, thread_sensitive=False)(*args, **kwargs)
