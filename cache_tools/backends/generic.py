"""Backends reached through Django's cache API only (memcached, uWSGI's cache, local memory,
files, database), with the primitives each family makes atomic overridden in its own module.

Keys are :class:`~cache_tools.backends.base.ServerKey` objects: their text is the server's key
and their ``name`` is what the cache API is given (it adds ``KEY_PREFIX`` and ``VERSION``). There
is no release signal, so waiters poll with a growing, jittered delay; and what Redis does in one
script takes several calls, so an ``invalidate()`` racing a computation may let that
computation's result be stored.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from .. import conf
from .._process import jitter
from ..errors import BackendUnavailable, OutcomeUnknown, StoreRefused, UnserializableValue
from .base import HIT, MISS, STALE, Attempt, Backend, EntryKeys, Fetched, LockKeys, ServerKey
from .records import sum_versions

__all__ = ["CacheAPIBackend", "poll_delay"]

_POLL_FIRST = 0.005
_POLL_LONGEST = 0.1
_ENVELOPE = "ct1"


_GUARD_ATTEMPTS, _GUARD_TTL = 20, 5  # a registry's lock: ~1.5 s of tries, held at most 5 s


def poll_delay(attempt: int) -> float:
    """Seconds before the next try: 5 ms doubling up to 100 ms, jittered by +-50%."""
    return min(_POLL_LONGEST, _POLL_FIRST * 2.0**attempt) * jitter.get().uniform(0.5, 1.5)


def _clock_us() -> int:
    """Where a generation (re)starts: above every value it had before it was lost."""
    return time.time_ns() // 1000


class CacheAPIBackend(Backend):
    """Capabilities built on ``add``/``get``/``set``/``delete``/``incr`` of the Django cache API.

    ``add`` must be atomic across the processes that share the cache for locks to hold there.
    Subclasses make ``_delete_if`` and ``_replace_if`` atomic where the backend allows.
    """

    #: Exceptions of the backend's client that mean "server unreachable".
    outage_errors: ClassVar[tuple[type[BaseException], ...]] = (
        ConnectionError,
        TimeoutError,
        OSError,
    )

    def _outage_errors(self) -> tuple[type[BaseException], ...]:
        return self.outage_errors

    def _refusal(self, exc: BaseException) -> str | None:
        """Why the server refused a write, when ``exc`` is a refusal rather than an outage."""
        return None

    @contextlib.contextmanager
    def _outage(self) -> Iterator[None]:
        try:
            yield
        except self._outage_errors() as exc:
            refusal = self._refusal(exc)
            if refusal is not None:
                raise StoreRefused(f"cache {self.alias!r} refused the write: {refusal}") from exc
            # A timeout means the request may have been applied; a refused connection not.
            if isinstance(exc, TimeoutError):
                raise OutcomeUnknown(
                    f"cache {self.alias!r} did not answer; the request may or may not have "
                    f"been applied: {exc}"
                ) from exc
            raise BackendUnavailable(f"cache {self.alias!r} is unreachable: {exc}") from exc

    def namespace_key(self) -> ServerKey:
        return self.server_key(f"{conf.namespace()}:ns")

    # Conditional writes, made atomic by subclasses where the backend can ---------------------

    def _delete_if(self, key: ServerKey, expected: str) -> bool:
        """Delete ``key`` if it holds ``expected``. Here get-then-delete: a lock that expires
        between the two could be lost by its next owner; subclasses close that window."""
        cache = self.cache
        if cache.get(key.name) != expected:
            return False
        cache.delete(key.name)
        return True

    def _replace_if(self, key: ServerKey, expected: str, ttl: float) -> bool:
        cache = self.cache
        if cache.get(key.name) != expected:
            return False
        cache.set(key.name, expected, ttl)
        return True

    # Locks -------------------------------------------------------------------------------

    @property
    def max_wait(self) -> float:
        return _POLL_LONGEST

    def _next_fence(self, fence_key: ServerKey, ttl: float) -> int:
        """Above the last fence while it is remembered, and never below the clock in
        microseconds: so the counter may expire with its lock (only the lock's holder calls
        this, so the read and the write do not race)."""
        cache = self.cache
        fence = max(int(cache.get(fence_key.name) or 0) + 1, _clock_us())
        cache.set(fence_key.name, fence, max(ttl, 1.0))
        return fence

    def _add_lock(self, keys: LockKeys, token: str, ttl: float) -> bool:
        return bool(self.cache.add(keys.lock.name, token, ttl))

    def acquire(
        self,
        keys: LockKeys,
        token: str,
        ttl: float,
        register_waiter: bool,
        attempt: int = 0,
        ticket: str | None = None,
    ) -> Attempt:
        with self._outage():
            if self._add_lock(keys, token, ttl):
                return Attempt(self._next_fence(keys.fence, ttl))
        return Attempt(None, poll_delay(attempt))

    def release(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> bool:
        with self._outage():
            if uncacheable:
                self.cache.set(keys.uncacheable.name, 1, uncacheable)
            return self._delete_if(keys.lock, token)

    def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        with self._outage():
            return self._replace_if(keys.lock, token, ttl)

    def owner(self, keys: LockKeys) -> str | None:
        with self._outage():
            token = self.cache.get(keys.lock.name)
        return token if isinstance(token, str) else None

    def wait(self, keys: LockKeys, timeout: float) -> str | None:
        time.sleep(max(timeout, 0.001))
        return None

    def exists(self, key: ServerKey) -> bool:
        with self._outage():
            return self.cache.get(key.name) is not None

    def delete(self, key: ServerKey) -> bool:
        with self._outage():
            return bool(self.cache.delete(key.name))

    # Cache-aside -------------------------------------------------------------------------
    # An entry is (envelope tag, generation, namespace generation, stale after, value). Both
    # generations start at the clock when missing, so an entry never matches a generation
    # that was lost (evicted, expired) and made again.

    def _generations(self, keys: EntryKeys, found: dict[str, Any]) -> tuple[Any, Any]:
        """The entry's generation (with tags, the sum of its versions: ``sum_versions``) and
        the namespace's, as ``found`` has them."""
        if len(keys.generations) == 1:
            generation = found.get(keys.generation.name)
        else:
            generation = sum_versions([found.get(key.name) for key in keys.generations])
        return generation, found.get(self.namespace_key().name)

    def _read(self, keys: EntryKeys) -> tuple[str, Any, Any, Any]:
        names = [keys.value.name, *(key.name for key in keys.generations)]
        names.append(self.namespace_key().name)
        with self._outage():
            found = self.cache.get_many(names)
        generation, namespace = self._generations(keys, found)
        envelope = found.get(keys.value.name)
        if (
            generation is None
            or namespace is None
            or not isinstance(envelope, tuple)
            or len(envelope) != 5
            or envelope[0] != _ENVELOPE
            or envelope[1:3] != (generation, namespace)
        ):
            return MISS, None, generation, namespace
        stale_after, value = envelope[3], envelope[4]
        fresh = stale_after == 0 or time.time() * 1000 < stale_after
        return (HIT if fresh else STALE), value, generation, namespace

    def read(self, keys: EntryKeys) -> Fetched:
        state, value, generation, _ = self._read(keys)
        return Fetched(state, value=value, generation=generation or 0)

    def _ensure_generations(self, keys: EntryKeys) -> int:
        cache = self.cache
        names = [key.name for key in keys.generations]
        with self._outage():
            for name in names:
                cache.add(name, _clock_us(), None)
            cache.add(self.namespace_key().name, _clock_us(), None)
            generation, _ = self._generations(keys, cache.get_many(names))
        return int(generation or 0)

    def fetch(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Fetched:
        state, value, generation, namespace = self._read(keys)
        if generation is None or namespace is None:
            generation = self._ensure_generations(keys)
        if state == HIT and not recompute:
            return Fetched(state, value=value, generation=generation)
        fence = None
        if token and state == MISS and self._uncacheable(keys.lock):
            return Fetched(MISS, generation=generation)  # compute without the lock
        if token:
            attempt = self.acquire(keys.lock, token, lock_ttl, register_waiter=False)
            if not attempt.taken:
                if state == MISS or recompute:
                    return Fetched(MISS, wait=poll_delay(2), generation=generation)
            else:
                # Read again under the lock: the entry may have been stored (and its lock
                # released) between the read above and this acquire.
                again, stored_value, stored_generation, _ = self._read(keys)
                if again == HIT and not recompute:
                    self.release(keys.lock, token)
                    return Fetched(again, value=stored_value, generation=stored_generation)
                fence = attempt.fence
        return Fetched(state, value=value, fence=fence, generation=generation)

    def _uncacheable(self, keys: LockKeys) -> bool:
        with self._outage():
            return self.cache.get(keys.uncacheable.name) is not None

    def _set_entry(self, key: ServerKey, envelope: tuple[Any, ...], ttl: float | None) -> None:
        try:
            pickle.dumps(envelope, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise UnserializableValue(
                f"cannot serialise {type(envelope[-1]).__name__}: {exc}"
            ) from exc
        with self._outage():
            self.cache.set(key.name, envelope, ttl)

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
        cache = self.cache
        if generation is None:
            generation = self._ensure_generations(keys)
        with self._outage():
            found = cache.get_many(
                [
                    *(key.name for key in keys.generations),
                    self.namespace_key().name,
                    keys.lock.fence.name,
                ]
            )
        current, namespace = self._generations(keys, found)
        stored = (
            current == generation
            and namespace is not None
            and (token is None or found.get(keys.lock.fence.name) == fence)
        )
        if stored:
            fresh_until = time.time() * 1000 + 1000 * (timeout or 0)
            stale_after = fresh_until if timeout is not None and stale else 0
            envelope = (_ENVELOPE, current, namespace, stale_after, value)
            self._set_entry(keys.value, envelope, None if timeout is None else timeout + stale)
        if token:
            with self._outage():
                self._delete_if(keys.lock.lock, token)
        return stored

    def invalidate(self, keys: EntryKeys) -> bool:
        cache = self.cache
        with self._outage():
            if cache.get(keys.lock.fence.name) is not None:
                with contextlib.suppress(ValueError):
                    cache.incr(keys.lock.fence.name)
            return bool(cache.delete(keys.value.name))

    def bump_generation(self, generation_key: ServerKey, ttl: float | None = None) -> int:
        # A missing generation needs no bump: no entry can match the one made next.
        with self._outage():
            try:
                return int(self.cache.incr(generation_key.name))
            except ValueError:
                return 0

    def bump_namespace(self) -> int:
        return self.bump_generation(self.namespace_key())

    def add_counts(
        self, counts: Mapping[ServerKey, Mapping[str, int]], ttl: float | None = None
    ) -> set[ServerKey]:
        cache = self.cache
        started = set()
        with self._outage():
            for stats_key, fields in counts.items():
                new = True
                for field, amount in fields.items():
                    name = f"{stats_key.name}:{field}"
                    new = cache.add(name, 0, ttl) and new
                    try:
                        cache.incr(name, amount)
                    except ValueError:
                        cache.add(name, amount, ttl)
                if new:
                    started.add(stats_key)
        return started

    def read_counts_many(
        self, stats_keys: Sequence[ServerKey], fields: tuple[str, ...]
    ) -> list[dict[str, int]]:
        names = [[f"{stats_key.name}:{field}" for field in fields] for stats_key in stats_keys]
        with self._outage():
            found = self.cache.get_many([name for row in names for name in row])
        return [
            {field: int(found.get(name) or 0) for field, name in zip(fields, row, strict=True)}
            for row in names
        ]

    def note_names(
        self,
        registry: ServerKey,
        names: Mapping[str, float],
        keep: int,
        max_age: float | None = None,
    ) -> None:
        """A read and a write under a short lock of the registry's own (only the statistics
        flusher, a background thread, calls this; it may wait a second for the lock)."""
        with self._guarded(registry):
            known = {**(self.cache.get(registry.name) or {}), **names}
            oldest = -math.inf if max_age is None else max(names.values()) - max_age
            newest = sorted(
                (item for item in known.items() if item[1] >= oldest), key=lambda item: item[1]
            )[-keep:]
            self.cache.set(registry.name, dict(newest), max_age and int(max_age) + 1)

    @contextlib.contextmanager
    def _guarded(self, registry: ServerKey) -> Iterator[None]:
        """A short lock of the registry's own around a read and a write of it (only the
        statistics flusher, a background thread, takes it; it may wait a second)."""
        guard = self.companion_key(registry, "#g")
        token = secrets.token_hex(8)
        with self._outage():
            for attempt in range(_GUARD_ATTEMPTS):
                if self.cache.add(guard.name, token, _GUARD_TTL):
                    break
                time.sleep(poll_delay(attempt))
            else:
                raise BackendUnavailable(f"the registry {registry.name!r} stayed locked")
            try:
                yield
            finally:
                self._delete_if(guard, token)

    def add_lock_counts(
        self,
        counts: Mapping[str, Mapping[str, int]],
        fields: tuple[str, ...],
        keep: int,
        max_age: float,
        kind: str = "locks",
    ) -> None:
        """The registry of locks (``{name: when}``) and their counts (``{name: {field:
        count}}``), read and written under the registry's guard (see :meth:`note_names`)."""
        registry, counts_key = self.registry_key(kind), self.lock_counts_key(kind)
        with self._guarded(registry):
            now, cache = time.time(), self.cache
            noted = {**(cache.get(registry.name) or {}), **dict.fromkeys(counts, now)}
            recent = dict(
                sorted((i for i in noted.items() if i[1] >= now - max_age), key=lambda i: i[1])[
                    -keep:
                ]
            )
            before = cache.get(counts_key.name) or {}
            totals = {name: dict(before.get(name, {})) for name in recent}  # the others go
            for name, added in counts.items():
                if name in totals:
                    for field in fields:
                        totals[name][field] = totals[name].get(field, 0) + added.get(field, 0)
            cache.set(registry.name, recent, int(max_age) + 1)
            cache.set(counts_key.name, totals, int(max_age) + 1)

    def read_lock_counts(
        self, fields: tuple[str, ...], names: Sequence[str] | None = None, kind: str = "locks"
    ) -> dict[str, dict[str, int]]:
        with self._outage():
            found = self.cache.get_many(
                [self.registry_key(kind).name, self.lock_counts_key(kind).name]
            )
        noted = found.get(self.registry_key(kind).name) or {}
        totals = found.get(self.lock_counts_key(kind).name) or {}
        wanted = list(noted) if names is None else names
        return {name: {f: totals.get(name, {}).get(f, 0) for f in fields} for name in wanted}

    def read_names(self, registry: ServerKey) -> dict[str, float]:
        with self._outage():
            return dict(self.cache.get(registry.name) or {})

    def read_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> dict[str, int]:
        names = {field: f"{stats_key.name}:{field}" for field in fields}
        with self._outage():
            found = self.cache.get_many(list(names.values()))
        return {field: int(found.get(name) or 0) for field, name in names.items()}

    def delete_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> None:
        with self._outage():
            self.cache.delete_many([f"{stats_key.name}:{field}" for field in fields])

    # Plain values, for update() under a lock -------------------------------------------------

    def read_value(self, key: str) -> Any:
        with self._outage():
            return self.cache.get(key)

    def write_value(self, key: str, value: Any, timeout: float | None) -> None:
        with self._outage():
            self.cache.set(key, value, timeout)
