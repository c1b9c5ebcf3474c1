"""The capability interface that locks and cache-aside talk to.

Each backend family implements :class:`Backend` once; ``locks`` and ``aside`` never look at
cache classes themselves. Key layout (all under the alias's ``KEY_PREFIX``/``VERSION`` and the
``CACHE_TOOLS["NAMESPACE"]``, shown here as ``ct``)::

    ct:lock:{name}          lock taken by lock() / lock_decorator, with companions
    ct:lock:{name}#s        release signal list (waiters block on it)
    ct:lock:{name}#f        fencing counter
    ct:lock:{name}#w        number of registered waiters
    ct:v:{func}:<args>      cache_aside entry (envelope: generation, soft expiry, value)
    ct:l:{func}:<args>      single-flight lock of that entry (same companions)
    ct:g:{func}             generation of the function (invalidate_all)
    ct:s:{func}             statistics hash of the function

The part in braces is a Redis Cluster hash tag, so each script's keys share a slot. Keys made
by :mod:`cache_tools.keys` never contain ``{``, ``}`` or ``#``, so these names cannot collide.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.core.cache import BaseCache, caches

from .. import conf


@dataclass(frozen=True)
class LockKeys:
    lock: str
    signal: str
    fence: str
    waiters: str


@dataclass(frozen=True)
class EntryKeys:
    value: str
    generation: str
    stats: str
    lock: LockKeys


class Fetched(NamedTuple):
    """What a cache-aside read found.

    ``state`` is ``HIT``, ``STALE`` or ``MISS``. ``fence`` is set when this caller now holds the
    entry's lock (it must compute or refresh); ``wait`` (seconds) is set when another caller
    holds it. ``generation`` is the function's generation seen by the read.
    """

    state: str
    value: Any = None
    fence: int | None = None
    wait: float | None = None
    generation: int = 0

    HIT = "hit"
    STALE = "stale"
    MISS = "miss"


class Backend(abc.ABC):
    """Capabilities of one cache alias. Methods raise ``BackendUnavailable`` on an outage."""

    #: False for backends whose state lives in one process (locks do not hold across workers).
    shared = True
    #: False where a lock could never exclude anything (DummyCache).
    locks = True

    def __init__(self, alias: str) -> None:
        self.alias = alias
        # Key names depend only on settings, and an adapter lives until settings change.
        self.lock_keys = functools.lru_cache(maxsize=4096)(self._lock_keys)
        self.entry_keys = functools.lru_cache(maxsize=4096)(self._entry_keys)

    @property
    def cache(self) -> BaseCache:
        # Looked up on every use: Django's caches are per thread, and never cached across fork.
        return caches[self.alias]

    def _key(self, kind: str, tag: str, rest: str = "", version: Any = None) -> str:
        return self.cache.make_key(f"{conf.namespace()}:{kind}:{{{tag}}}{rest}", version=version)

    def _lock_keys(self, name: str) -> LockKeys:
        base = self._key("lock", name)
        return LockKeys(base, f"{base}#s", f"{base}#f", f"{base}#w")

    def _entry_keys(self, function_id: str, argument_key: str, version: Any = None) -> EntryKeys:
        lock = self._key("l", function_id, f":{argument_key}", version)
        return EntryKeys(
            value=self._key("v", function_id, f":{argument_key}", version),
            generation=self._key("g", function_id),
            stats=self._key("s", function_id),
            lock=LockKeys(lock, f"{lock}#s", f"{lock}#f", f"{lock}#w"),
        )

    def stats_key(self, function_id: str) -> str:
        return self._key("s", function_id)

    # Locks -------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def max_wait(self) -> float:
        """Longest single blocking wait, in seconds (below the client's socket timeout)."""

    @abc.abstractmethod
    def acquire(
        self, keys: LockKeys, token: str, ttl: float, register_waiter: bool, attempt: int = 0
    ) -> tuple[bool, int | float]:
        """Try once. Returns ``(True, fence)``, or ``(False, seconds to wait before trying
        again)``: the holder's remaining TTL where a release signal wakes waiters, else a poll
        delay growing with ``attempt``."""

    @abc.abstractmethod
    def release(self, keys: LockKeys, token: str, wake_all: bool = False) -> bool:
        """Release if ``token`` holds the lock and wake one (or all) waiters; False if not ours."""

    @abc.abstractmethod
    def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        """Give the lock a new TTL if ``token`` still holds it."""

    @abc.abstractmethod
    def wait(self, keys: LockKeys, timeout: float) -> bool:
        """Block until a release signal or ``timeout`` seconds; True when signalled."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    def waiters(self, keys: LockKeys) -> int | None:
        """Waiters registered on a held lock, where the backend knows (None otherwise)."""
        return None

    # Cache-aside -------------------------------------------------------------------------

    @abc.abstractmethod
    def read(self, keys: EntryKeys) -> Fetched:
        """Read an entry in one round trip, counting nothing and taking no lock (the hit path)."""

    @abc.abstractmethod
    def fetch(self, keys: EntryKeys, token: str | None, lock_ttl: float) -> Fetched:
        """Read an entry and count the hit; with ``token``, take the entry's lock on a miss or
        a stale hit (registering as a waiter when another caller holds it)."""

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
        counts: dict[str, int] | None = None,
    ) -> bool:
        """Write an entry fresh for ``timeout`` and served stale ``stale`` seconds more, add
        ``counts`` to the statistics, and release the lock held by ``token`` waking all waiters.

        Nothing is written (returns False) when the function's generation moved on from
        ``generation`` (None: the current one) or, with a ``token``, when the entry's fence moved
        on (invalidated or taken over meanwhile). Raises ``UnserializableValue`` before writing
        anything when ``value`` cannot be serialised.
        """

    @abc.abstractmethod
    def invalidate(self, keys: EntryKeys) -> bool:
        """Delete the entry and void any computation of it in flight; True if one was there."""

    @abc.abstractmethod
    def bump_generation(self, generation_key: str) -> int: ...

    @abc.abstractmethod
    def add_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Add to several statistics hashes at once: ``{stats_key: {field: amount}}``."""

    @abc.abstractmethod
    def read_counts(self, stats_key: str) -> dict[str, int]: ...

    @abc.abstractmethod
    def delete(self, key: str) -> bool: ...

    @abc.abstractmethod
    def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, retries: int
    ) -> Any:
        """Apply ``function`` to the value ``cache.get(key)`` reads, without losing updates."""
