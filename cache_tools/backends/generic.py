"""Backends reached through Django's cache API only (memcached, uWSGI's cache, local memory,
files, database), with the primitives each family makes atomic overridden in its own module.

Keys here are logical (``ct:v:{func}:args``): the cache API adds ``KEY_PREFIX`` and ``VERSION``
itself, so a cache-aside ``version`` is written into the key. There is no release signal, so
waiters poll with a growing, jittered delay; and what Redis does in one script takes several
calls, so an ``invalidate()`` racing a computation may let that computation's result be stored.
"""

from __future__ import annotations

import contextlib
import pickle
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import conf
from ..errors import BackendUnavailable, UnserializableValue, UpdateConflict
from .base import Backend, EntryKeys, Fetched, LockKeys

_POLL_FIRST = 0.005
_POLL_LONGEST = 0.1
_FIELDS = ("hits", "misses", "stale_hits", "computations", "errors")
_ENVELOPE = "ct1"


def poll_delay(attempt: int) -> float:
    """Seconds before the next try: 5 ms doubling up to 100 ms, jittered by +-50%."""
    return min(_POLL_LONGEST, _POLL_FIRST * 2**attempt) * random.uniform(0.5, 1.5)


class CacheAPIBackend(Backend):
    """Capabilities built on ``add``/``get``/``set``/``delete``/``incr`` of the Django cache API.

    ``add`` must be atomic across the processes that share the cache for locks to hold there.
    Subclasses make ``_delete_if`` and ``_replace_if`` atomic where the backend allows.
    """

    #: Exceptions of the backend's client that mean "server unreachable".
    outage_errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, OSError)

    @contextlib.contextmanager
    def _outage(self) -> Iterator[None]:
        try:
            yield
        except self.outage_errors as exc:
            raise BackendUnavailable(f"cache {self.alias!r} is unreachable: {exc}") from exc

    def _key(self, kind: str, tag: str, rest: str = "", version: Any = None) -> str:
        versioned = "" if version is None else f":v{version}"
        return f"{conf.namespace()}:{kind}:{{{tag}}}{versioned}{rest}"

    def full_key(self, key: str) -> str:
        return self.cache.make_key(key)

    def namespace_key(self) -> str:
        return f"{conf.namespace()}:ns"

    # Conditional writes, made atomic by subclasses where the backend can ---------------------

    def _delete_if(self, key: str, expected: str) -> bool:
        """Delete ``key`` if it holds ``expected``. Here get-then-delete: a lock that expires
        between the two could be lost by its next owner; subclasses close that window."""
        cache = self.cache
        if cache.get(key) != expected:
            return False
        cache.delete(key)
        return True

    def _replace_if(self, key: str, expected: str, ttl: float) -> bool:
        cache = self.cache
        if cache.get(key) != expected:
            return False
        cache.set(key, expected, ttl)
        return True

    # Locks -------------------------------------------------------------------------------

    @property
    def max_wait(self) -> float:
        return _POLL_LONGEST

    def _next_fence(self, fence_key: str) -> int:
        cache = self.cache
        # A missing counter starts from the clock in microseconds: above every earlier fence.
        cache.add(fence_key, time.time_ns() // 1000, None)
        try:
            return int(cache.incr(fence_key))
        except ValueError:  # expired between add and incr
            cache.add(fence_key, time.time_ns() // 1000 + 1, None)
            return int(cache.get(fence_key))

    def acquire(
        self, keys: LockKeys, token: str, ttl: float, register_waiter: bool, attempt: int = 0
    ) -> tuple[bool, int | float]:
        with self._outage():
            if self.cache.add(keys.lock, token, ttl):
                return True, self._next_fence(keys.fence)
        return False, poll_delay(attempt)

    def release(self, keys: LockKeys, token: str, wake_all: bool = False) -> bool:
        with self._outage():
            return self._delete_if(keys.lock, token)

    def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        with self._outage():
            return self._replace_if(keys.lock, token, ttl)

    def wait(self, keys: LockKeys, timeout: float) -> bool:
        time.sleep(max(timeout, 0.001))
        return False

    def exists(self, key: str) -> bool:
        with self._outage():
            return self.cache.get(key) is not None

    def delete(self, key: str) -> bool:
        with self._outage():
            return bool(self.cache.delete(key))

    # Cache-aside -------------------------------------------------------------------------

    def _read(self, keys: EntryKeys) -> tuple[str, Any, int, int]:
        namespace = self.namespace_key()
        with self._outage():
            found = self.cache.get_many([keys.value, keys.generation, namespace])
        generation = int(found.get(keys.generation) or 0)
        namespace_generation = int(found.get(namespace) or 0)
        envelope = found.get(keys.value)
        if (
            not isinstance(envelope, tuple)
            or len(envelope) != 5
            or envelope[0] != _ENVELOPE
            or envelope[1:3] != (generation, namespace_generation)
        ):
            return Fetched.MISS, None, generation, namespace_generation
        stale_after, value = envelope[3], envelope[4]
        fresh = stale_after == 0 or time.time() * 1000 < stale_after
        return (Fetched.HIT if fresh else Fetched.STALE), value, generation, namespace_generation

    def read(self, keys: EntryKeys) -> Fetched:
        state, value, generation, _ = self._read(keys)
        return Fetched(state, value=value, generation=generation)

    def fetch(self, keys: EntryKeys, token: str | None, lock_ttl: float) -> Fetched:
        state, value, generation, _ = self._read(keys)
        if state == Fetched.HIT:
            self.add_counts({keys.stats: {"hits": 1}})
            return Fetched(state, value=value, generation=generation)
        fence = None
        if token:
            taken, number = self.acquire(keys.lock, token, lock_ttl, register_waiter=False)
            if taken:
                fence = int(number)
            elif state == Fetched.MISS:
                return Fetched(Fetched.MISS, wait=poll_delay(2), generation=generation)
        if state == Fetched.STALE:
            self.add_counts({keys.stats: {"stale_hits": 1}})
        return Fetched(state, value=value, fence=fence, generation=generation)

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
        cache = self.cache
        namespace = self.namespace_key()
        with self._outage():
            found = cache.get_many([keys.generation, namespace, keys.lock.fence])
            current = int(found.get(keys.generation) or 0)
            stored = (generation is None or generation == current) and (
                token is None or found.get(keys.lock.fence) == fence
            )
            if stored:
                fresh_until = time.time() * 1000 + 1000 * (timeout or 0)
                stale_after = fresh_until if timeout is not None and stale else 0
                envelope = (_ENVELOPE, current, int(found.get(namespace) or 0), stale_after, value)
                ttl = None if timeout is None else timeout + stale
                try:
                    cache.set(keys.value, envelope, ttl)
                except (pickle.PicklingError, TypeError, AttributeError) as exc:
                    raise UnserializableValue(
                        f"cannot serialise {type(value).__name__}: {exc}"
                    ) from exc
            if counts:
                self.add_counts({keys.stats: counts})
            if token:
                self._delete_if(keys.lock.lock, token)
        return stored

    def invalidate(self, keys: EntryKeys) -> bool:
        cache = self.cache
        with self._outage():
            if cache.get(keys.lock.fence) is not None:
                with contextlib.suppress(ValueError):
                    cache.incr(keys.lock.fence)
            return bool(cache.delete(keys.value))

    def bump_generation(self, generation_key: str) -> int:
        cache = self.cache
        with self._outage():
            cache.add(generation_key, 0, None)
            return int(cache.incr(generation_key))

    def bump_namespace(self) -> int:
        """Make every cache_tools entry of this alias unreachable, in O(1)."""
        return self.bump_generation(self.namespace_key())

    def add_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        cache = self.cache
        with self._outage():
            for stats_key, fields in counts.items():
                for field, amount in fields.items():
                    key = f"{stats_key}:{field}"
                    cache.add(key, 0, None)
                    try:
                        cache.incr(key, amount)
                    except ValueError:
                        cache.add(key, amount, None)

    def read_counts(self, stats_key: str) -> dict[str, int]:
        with self._outage():
            found = self.cache.get_many([f"{stats_key}:{field}" for field in _FIELDS])
        return {field: int(found.get(f"{stats_key}:{field}") or 0) for field in _FIELDS}

    def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, retries: int
    ) -> Any:
        """Read-modify-write under one of our locks (safe where ``add`` is atomic)."""
        token = f"update-{random.getrandbits(64):x}"
        keys = self.lock_keys(f"update:{key}")
        for attempt in range(retries + 1):
            taken, delay = self.acquire(keys, token, 10, False, attempt)
            if taken:
                try:
                    with self._outage():
                        new = function(self.cache.get(key))
                        self.cache.set(key, new, timeout)
                    return new
                finally:
                    self.release(keys, token)
            time.sleep(delay)
        raise UpdateConflict(f"update of {key!r} could not take its lock in {retries + 1} tries")
