"""The single-flight, stale-while-revalidate engine, written once for every cached thing.

:class:`Flight` answers "give me the value for this argument key, computing it at most once
across every process": :func:`~cache_tools.cache_aside`, :func:`~cache_tools.cache_view` and
``warm_cache`` all go through it. It talks only to the backend contract.

Failures are kept apart from the caller's own code: only backend calls are guarded. An outage
(:class:`~cache_tools.errors.BackendUnavailable`) computes without the cache; a refused store
(:class:`~cache_tools.errors.StoreRefused`) returns the computed value uncached; both count an
error and warn once. Exceptions raised by the computation itself always reach the caller.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections

from . import stats
from ._process import PerProcess
from .backends import get_backend
from .backends.base import HIT, MISS, STALE, Backend, EntryKeys, Fetched
from .errors import BackendUnavailable, StoreRefused
from .orphans import release_when_answering

__all__ = ["NOT_STORED", "UNCACHED", "Flight", "Timeout"]

logger = logging.getLogger("cache_tools.aside")

T = TypeVar("T")
Timeout = float | None | Callable[[Any], float | None]

#: Returned by a computation as its value to store when its result must not be cached.
NOT_STORED: Any = object()
#: The state of a result computed but not cached because the cache was down or refused it.
UNCACHED = "uncached"

Compute = Callable[[], tuple[T, Any]]


class _Warnings:
    """One warning per outage of an alias, and one per refusal kind of a function."""

    def __init__(self) -> None:
        self._down: set[str] = set()
        self._refused: set[tuple[str, str, type[Exception]]] = set()

    def outage(self, backend: Backend, keys: EntryKeys, error: Exception) -> None:
        stats.add(backend.alias, keys.stats, "errors")
        if backend.alias not in self._down:
            self._down.add(backend.alias)
            logger.warning(
                "cache %r is unavailable, computing without it: %s", backend.alias, error
            )

    def answered(self, alias: str) -> None:
        if alias in self._down:
            self._down.discard(alias)
            logger.warning("cache %r is reachable again", alias)

    def refused(self, backend: Backend, keys: EntryKeys, name: str, error: Exception) -> None:
        stats.add(backend.alias, keys.stats, "errors")
        kind = (backend.alias, name, type(error))
        if kind not in self._refused:
            self._refused.add(kind)
            logger.warning("not caching the result of %s: %s", name, error)


_warnings = _Warnings()


class _Refresher:
    """Runs stale-entry refreshes on a few threads per process, one per entry at a time.

    A refresh that finds another caller (maybe in another process) refreshing returns how long
    that caller's lock has left, capped at a second; stale hits in this process then skip the
    attempt until that time instead of spending a round trip each.
    """

    WORKERS = 4
    LONGEST_QUIET = 1.0

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._running: set[str] = set()
        self._quiet_until: dict[str, float] = {}
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, entry_key: str, refresh: Callable[[], float | None], name: str) -> None:
        now = time.monotonic()
        with self._guard:
            if entry_key in self._running or self._quiet_until.get(entry_key, 0.0) > now:
                return
            self._running.add(entry_key)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.WORKERS, "cache-tools-refresh")
            executor = self._executor
        executor.submit(self._run, entry_key, refresh, name)

    def _run(self, entry_key: str, refresh: Callable[[], float | None], name: str) -> None:
        busy_for = None
        try:
            busy_for = refresh()
        except Exception:
            logger.exception("background refresh of %s failed", name)
        finally:
            now = time.monotonic()
            with self._guard:
                self._running.discard(entry_key)
                if busy_for:
                    if len(self._quiet_until) > 1000:
                        self._quiet_until = {k: t for k, t in self._quiet_until.items() if t > now}
                    self._quiet_until[entry_key] = now + min(busy_for, self.LONGEST_QUIET)
            connections.close_all()  # this thread's own database connections


_refresher = PerProcess(_Refresher)


@dataclass
class Flight(Generic[T]):
    """The single-flight, stale-while-revalidate engine for one cached function or view.

    ``get(argument_key, compute)`` returns ``(state, value)``: ``state`` is ``"hit"``,
    ``"stale"``, ``"miss"`` or :data:`UNCACHED`; on the last two ``value`` is what
    ``compute()`` returned, otherwise the stored value. ``compute()`` returns
    ``(result, to_store)``; ``to_store`` is :data:`NOT_STORED` when the result must not be
    cached. ``scope`` (optional) names a part of the function with a generation of its own (a
    view's path).
    """

    function_id: str
    alias: str | None
    timeout: Timeout
    stale: float
    lock: bool
    lock_timeout: float
    version: Any = None

    @property
    def backend(self) -> Backend:
        return get_backend(self.alias)

    def keys(
        self, argument_key: str, backend: Backend | None = None, scope: str | None = None
    ) -> EntryKeys:
        return (backend or self.backend).entry_keys(
            self.function_id, argument_key, self.version, scope
        )

    def get(
        self, argument_key: str, compute: Compute[T], scope: str | None = None
    ) -> tuple[str, Any]:
        backend = self.backend
        keys = self.keys(argument_key, backend, scope)
        try:
            fetched = backend.read(keys)
        except BackendUnavailable as exc:
            return UNCACHED, self._without_cache(backend, keys, compute, exc)
        _warnings.answered(backend.alias)
        if fetched.state == HIT:
            stats.add(backend.alias, keys.stats, "hits")
            return fetched.state, fetched.value
        token = secrets.token_hex(16) if self.lock else None
        if fetched.state == STALE and token:
            stats.add(backend.alias, keys.stats, "stale_hits")
            self._refresh_in_background(backend, keys, compute, fetched.generation)
            return fetched.state, fetched.value
        # A miss (or, without single flight, a stale entry): read again on the server, taking
        # the entry's lock if it is free, or learning how long to wait.
        while True:
            try:
                fetched = backend.fetch(keys, token, self.lock_timeout)
            except BackendUnavailable as exc:
                self._maybe_orphaned(backend, keys, token, exc)
                return UNCACHED, self._without_cache(backend, keys, compute, exc)
            except StoreRefused as exc:  # it would not even take the entry's lock
                _warnings.refused(backend, keys, self.function_id, exc)
                stats.add(backend.alias, keys.stats, "computations")
                return UNCACHED, compute()[0]
            if fetched.state == HIT or (fetched.state == STALE and token):
                field = "hits" if fetched.state == HIT else "stale_hits"
                stats.add(backend.alias, keys.stats, field)
                if fetched.fence and token:
                    held = (token, fetched.fence)
                    self._refresh_in_background(backend, keys, compute, fetched.generation, held)
                return fetched.state, fetched.value
            if fetched.wait is None:
                stats.add(backend.alias, keys.stats, "misses")
                return self._compute_and_store(backend, keys, compute, token, fetched)
            try:
                backend.wait(keys.lock, min(fetched.wait or backend.max_wait, backend.max_wait))
            except BackendUnavailable as exc:
                return UNCACHED, self._without_cache(backend, keys, compute, exc)

    def refresh(
        self, argument_key: str, compute: Compute[T], scope: str | None = None
    ) -> tuple[str, T]:
        """Compute now and store unconditionally (no single flight); ``(state, result)``."""
        backend = self.backend
        keys = self.keys(argument_key, backend, scope)
        return self._compute_and_store(backend, keys, compute, None, None)

    def _without_cache(
        self, backend: Backend, keys: EntryKeys, compute: Compute[T], error: Exception
    ) -> T:
        _warnings.outage(backend, keys, error)
        stats.add(backend.alias, keys.stats, "computations")
        return compute()[0]

    def _maybe_orphaned(
        self, backend: Backend, keys: EntryKeys, token: str | None, error: BackendUnavailable
    ) -> None:
        """A request that takes the entry's lock got no reply: the server may hold it."""
        if token and error.outcome_unknown:
            release_when_answering(backend, keys.lock, token, self.lock_timeout)

    def _compute_and_store(
        self,
        backend: Backend,
        keys: EntryKeys,
        compute: Compute[T],
        token: str | None,
        fetched: Fetched | None,
    ) -> tuple[str, T]:
        stats.add(backend.alias, keys.stats, "computations")
        try:
            result, to_store = compute()
        except BaseException:
            self._release(backend, keys, token, wake_all=False)
            raise
        outcome = (
            "kept out"
            if to_store is NOT_STORED
            else self._store(backend, keys, result, to_store, token, fetched)
        )
        if outcome != "stored":
            self._release(backend, keys, token, wake_all=True)
        return (UNCACHED if outcome == "failed" else MISS), result

    def put(self, argument_key: str, result: T, to_store: Any, scope: str | None = None) -> None:
        """Store ``to_store`` (the stored form of ``result``) without taking the entry's lock."""
        backend = self.backend
        self._store(backend, self.keys(argument_key, backend, scope), result, to_store, None, None)

    def _store(
        self,
        backend: Backend,
        keys: EntryKeys,
        result: T,
        to_store: Any,
        token: str | None,
        fetched: Fetched | None,
    ) -> str:
        """Store, releasing the entry's lock. Returns ``"stored"`` when done (written, or
        skipped because the entry was invalidated meanwhile), ``"kept out"`` (a zero timeout)
        or ``"failed"`` (refused or unreachable); in both the lock is still the caller's."""
        timeout = self.timeout(result) if callable(self.timeout) else self.timeout
        if timeout is not None and timeout <= 0:
            return "kept out"
        try:
            backend.store(
                keys,
                to_store,
                timeout=timeout,
                stale=self.stale,
                generation=fetched.generation if fetched else None,
                token=token,
                fence=fetched.fence if fetched else None,
            )
        except StoreRefused as exc:
            _warnings.refused(backend, keys, self.function_id, exc)
            return "failed"
        except BackendUnavailable as exc:
            _warnings.outage(backend, keys, exc)
            return "failed"
        return "stored"

    def _release(
        self, backend: Backend, keys: EntryKeys, token: str | None, wake_all: bool
    ) -> None:
        """Release the entry's lock without storing: one waiter takes over, or all re-read.
        If the server cannot be told now, it is told as soon as it answers."""
        if not token:
            return
        try:
            backend.release(keys.lock, token, wake_all=wake_all)
        except (BackendUnavailable, StoreRefused):
            release_when_answering(backend, keys.lock, token, self.lock_timeout)

    def _refresh_in_background(
        self,
        backend: Backend,
        keys: EntryKeys,
        compute: Compute[T],
        generation: int,
        held: tuple[str, int] | None = None,
    ) -> None:
        """Refresh a stale entry in this process's refresh threads; ``held`` is the entry's
        lock as ``(token, fence)`` when the caller already took it."""

        def refresh() -> float | None:
            """Refresh; or, if another caller is refreshing, return how long it may take."""
            token, fence = held or (secrets.token_hex(16), 0)
            if held is None:
                try:
                    taken, number = backend.acquire(keys.lock, token, self.lock_timeout, False)
                except BackendUnavailable as exc:
                    self._maybe_orphaned(backend, keys, token, exc)
                    return None
                except StoreRefused:
                    return self.lock_timeout  # full: stay quiet a while, serving stale
                if not taken:
                    return number or self.lock_timeout
                fence = int(number)
                try:
                    fresh = backend.read(keys).state == HIT
                except BackendUnavailable:
                    fresh = True  # give up this refresh; a later stale hit tries again
                if fresh:  # or refreshed by another caller while we took the lock
                    self._release(backend, keys, token, wake_all=False)
                    return None
            started = Fetched(STALE, fence=fence, generation=generation)
            self._compute_and_store(backend, keys, compute, token, started)
            return None

        _refresher.get().submit(keys.value, refresh, self.function_id)

    def contains(self, argument_key: str, scope: str | None = None) -> bool:
        return self.backend.read(self.keys(argument_key, scope=scope)).state != MISS

    def invalidate(self, argument_key: str, scope: str | None = None) -> bool:
        backend = self.backend
        return backend.invalidate(self.keys(argument_key, backend, scope))

    def invalidate_scope(self, scope: str | None = None) -> int:
        """Make every entry of the function (or of one ``scope`` of it) unreachable, in O(1);
        returns the new generation (0 when there was none, and so no entry)."""
        backend = self.backend
        return backend.bump_generation(backend.generation_key(self.function_id, scope))

    def info(self) -> stats.CacheInfo:
        backend = self.backend
        return stats.read(backend.alias, backend.stats_key(self.function_id))

    def clear_stats(self) -> None:
        backend = self.backend
        stats.clear(backend.alias, backend.stats_key(self.function_id))
