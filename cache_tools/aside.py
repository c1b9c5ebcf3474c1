"""Cache-aside with single flight, stale-while-revalidate and statistics shared by all processes.

.. code-block:: python

    from cache_tools import cache_aside

    @cache_aside(timeout=300, stale=60)
    def get_profile(user_id): ...

    get_profile(7)              # a hit, or exactly one caller computes while the others wait
    get_profile.invalidate(7)   # True if an entry was there
    get_profile.cache_info()    # CacheInfo(hits=..., misses=..., ...) across every process

The single-flight and stale logic lives here once, in :class:`Flight`; :func:`cache_aside`,
:func:`~cache_tools.views.cache_view` and ``warm_cache`` all go through it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from django.db import connections

from . import checks, stats
from ._options import applied_bare, positive_seconds, seconds_or_zero
from ._process import PerProcess
from .backends import get_backend
from .backends.base import Backend, EntryKeys, Fetched
from .errors import BackendUnavailable, UnserializableValue
from .keys import KeyMaker, function_id, make_key

__all__ = ["CacheInfo", "CachedFunction", "Call", "Flight", "cache_aside", "cached_functions"]

logger = logging.getLogger("cache_tools.aside")

T = TypeVar("T")
Timeout = float | None | Callable[[Any], float | None]

#: Length budget of the arguments part of an entry key, so that whole keys stay memcached-safe.
ARGUMENT_KEY_LENGTH = 120


class CacheInfo(NamedTuple):
    """Statistics of one cached function, summed over every process sharing the cache."""

    hits: int
    misses: int
    stale_hits: int
    computations: int
    errors: int


class Call:
    """One set of arguments to pre-compute, for ``warm=``: ``Call(7, detail=True)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    @classmethod
    def of(cls, value: Call | tuple[Any, ...] | dict[str, Any] | Any) -> Call:
        """A ``Call`` from a ``Call``, a tuple of positional or a dict of keyword arguments."""
        if isinstance(value, Call):
            return value
        if isinstance(value, tuple):
            return cls(*value)
        if isinstance(value, dict):
            return cls(**value)
        return cls(value)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Call({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and (self.args, self.kwargs) == (other.args, other.kwargs)

    __hash__ = None  # type: ignore[assignment]


class _Outages:
    """Which aliases this process found down: one warning per outage, not one per call."""

    def __init__(self) -> None:
        self._down: set[str] = set()

    def failed(self, alias: str, stats_key: str, error: Exception) -> None:
        stats.add(alias, stats_key, "errors")
        if alias not in self._down:
            self._down.add(alias)
            logger.warning("cache %r is unavailable, computing without it: %s", alias, error)

    def answered(self, alias: str) -> None:
        if alias in self._down:
            self._down.discard(alias)
            logger.warning("cache %r is reachable again", alias)


_outages = _Outages()


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
    ``"stale"`` or ``"miss"``; on a miss ``value`` is what ``compute()`` returned, otherwise
    the stored value. ``compute()`` returns ``(result, to_store)``; ``to_store`` is
    :data:`NOT_STORED` when the result must not be cached.
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

    def keys(self, argument_key: str, backend: Backend | None = None) -> EntryKeys:
        return (backend or self.backend).entry_keys(self.function_id, argument_key, self.version)

    def get(self, argument_key: str, compute: Callable[[], tuple[T, Any]]) -> tuple[str, Any]:
        backend = self.backend
        keys = self.keys(argument_key, backend)
        token = None
        try:
            while True:
                fetched = backend.read(keys)
                _outages.answered(backend.alias)
                if fetched.state == Fetched.HIT:
                    stats.add(backend.alias, keys.stats, "hits")
                    return fetched.state, fetched.value
                if token is None and self.lock:
                    token = secrets.token_hex(16)
                if fetched.state == Fetched.STALE and token:
                    stats.add(backend.alias, keys.stats, "stale_hits")
                    self._refresh_in_background(backend, keys, compute, fetched.generation)
                    return fetched.state, fetched.value
                # A miss (or, without single flight, a stale entry): read again on the server,
                # taking the entry's lock if it is free, or learning how long to wait.
                fetched = backend.fetch(keys, token, self.lock_timeout)
                if fetched.state == Fetched.HIT or (fetched.state == Fetched.STALE and token):
                    if fetched.fence and token:
                        held = (token, fetched.fence)
                        self._refresh_in_background(
                            backend, keys, compute, fetched.generation, held
                        )
                    return fetched.state, fetched.value
                if fetched.wait is None:
                    return Fetched.MISS, self._compute_and_store(
                        backend, keys, compute, token, fetched, {"misses": 1}
                    )
                backend.wait(keys.lock, min(fetched.wait or backend.max_wait, backend.max_wait))
        except BackendUnavailable as exc:
            _outages.failed(backend.alias, keys.stats, exc)
            result, _ = compute()
            return Fetched.MISS, result

    def refresh(self, argument_key: str, compute: Callable[[], tuple[T, Any]]) -> T:
        """Compute now and store unconditionally (no single flight); return the result."""
        backend = self.backend
        keys = self.keys(argument_key, backend)
        return self._compute_and_store(backend, keys, compute, None, None, {})

    def _compute_and_store(
        self,
        backend: Backend,
        keys: EntryKeys,
        compute: Callable[[], tuple[T, Any]],
        token: str | None,
        fetched: Fetched | None,
        counts: dict[str, int],
    ) -> T:
        counts = {**counts, "computations": 1}
        try:
            result, to_store = compute()
        except BaseException:
            self._give_up(backend, keys, token, counts, wake_all=False)
            raise
        timeout = self.timeout(result) if callable(self.timeout) else self.timeout
        if to_store is NOT_STORED or (timeout is not None and timeout <= 0):
            self._give_up(backend, keys, token, counts, wake_all=True)
            return result
        try:
            backend.store(
                keys,
                to_store,
                timeout=timeout,
                stale=self.stale,
                generation=fetched.generation if fetched else None,
                token=token,
                fence=fetched.fence if fetched else None,
                counts=counts,
            )
        except UnserializableValue as exc:
            logger.warning("not caching the result of %s: %s", self.function_id, exc)
            self._give_up(backend, keys, token, {**counts, "errors": 1}, wake_all=True)
        except BackendUnavailable as exc:
            _outages.failed(backend.alias, keys.stats, exc)
        return result

    def _give_up(
        self,
        backend: Backend,
        keys: EntryKeys,
        token: str | None,
        counts: dict[str, int],
        wake_all: bool,
    ) -> None:
        """Release the entry's lock without storing: one waiter takes over, or all re-read."""
        for field, amount in counts.items():
            stats.add(backend.alias, keys.stats, field, amount)
        if token:
            try:
                backend.release(keys.lock, token, wake_all=wake_all)
            except BackendUnavailable as exc:
                _outages.failed(backend.alias, keys.stats, exc)

    def _refresh_in_background(
        self,
        backend: Backend,
        keys: EntryKeys,
        compute: Callable[[], tuple[T, Any]],
        generation: int,
        held: tuple[str, int] | None = None,
    ) -> None:
        """Refresh a stale entry in this process's refresh threads; ``held`` is the entry's
        lock as ``(token, fence)`` when the caller already took it."""

        def refresh() -> float | None:
            """Refresh; or, if another caller is refreshing, return how long it may take."""
            token, fence = held or (secrets.token_hex(16), 0)
            if held is None:
                taken, number = backend.acquire(keys.lock, token, self.lock_timeout, False)
                if not taken:
                    return number or self.lock_timeout
                fence = number
                if backend.read(keys).state == Fetched.HIT:
                    backend.release(keys.lock, token)  # refreshed while we took the lock
                    return None
            started = Fetched(Fetched.STALE, fence=int(fence), generation=generation)
            self._compute_and_store(backend, keys, compute, token, started, {})
            return None

        _refresher.get().submit(keys.value, refresh, self.function_id)

    def contains(self, argument_key: str) -> bool:
        return self.backend.read(self.keys(argument_key)).state != Fetched.MISS

    def invalidate(self, argument_key: str) -> bool:
        backend = self.backend
        return backend.invalidate(self.keys(argument_key, backend))

    def invalidate_all(self) -> None:
        backend = self.backend
        backend.bump_generation(backend.entry_keys(self.function_id, "", self.version).generation)

    def info(self) -> CacheInfo:
        backend = self.backend
        stats_key = backend.stats_key(self.function_id)
        counts = stats.unsent(backend.alias, stats_key)
        counts.update(backend.read_counts(stats_key))
        return CacheInfo(*(counts[field] for field in CacheInfo._fields))

    def clear_stats(self) -> None:
        backend = self.backend
        stats_key = backend.stats_key(self.function_id)
        stats.discard(backend.alias, stats_key)
        backend.delete(stats_key)


NOT_STORED: Any = object()


_all_cached_functions: weakref.WeakSet[CachedFunction[Any]] = weakref.WeakSet()


def cached_functions() -> list[CachedFunction[Any]]:
    """Every ``cache_aside`` function defined in this process, by dotted path (for dashboards)."""
    return sorted(_all_cached_functions, key=lambda f: f.flight.function_id)


class CachedFunction(Generic[T]):
    """What :func:`cache_aside` returns: the function, plus cache controls as methods."""

    def __init__(
        self,
        func: Callable[..., T],
        flight: Flight[T],
        key_maker: KeyMaker,
        cache_none: bool,
        unless: Callable[[], bool] | None,
        warm: Iterable[Any] | Callable[[], Iterable[Any]] | None,
    ) -> None:
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self.flight = flight
        self.key_maker = key_maker
        self.cache_none = cache_none
        self.unless = unless
        self.warm = warm
        _all_cached_functions.add(self)

    def __repr__(self) -> str:
        return f"<cached function {self.flight.function_id}>"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return _BoundCachedFunction(self, instance)

    def argument_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return make_key(
            self.__wrapped__,
            args,
            kwargs,
            self.key_maker,
            max_length=ARGUMENT_KEY_LENGTH,
            with_function=False,
        )

    def _compute(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], Any]:
        def compute() -> tuple[T, Any]:
            result = self.__wrapped__(*args, **kwargs)
            return result, NOT_STORED if result is None and not self.cache_none else result

        return compute

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        if self.unless is not None and self.unless():
            return self.__wrapped__(*args, **kwargs)
        _, value = self.flight.get(self.argument_key(args, kwargs), self._compute(args, kwargs))
        return value

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Drop the entry for these arguments; True if one was there."""
        return self.flight.invalidate(self.argument_key(args, kwargs))

    def invalidate_all(self) -> None:
        """Make every entry of this function unreachable, in one O(1) operation."""
        self.flight.invalidate_all()

    def refresh(self, *args: Any, **kwargs: Any) -> T:
        """Recompute for these arguments now, store and return the new value."""
        return self.flight.refresh(self.argument_key(args, kwargs), self._compute(args, kwargs))

    def is_cached(self, *args: Any, **kwargs: Any) -> bool:
        """True if an entry (fresh or stale) exists for these arguments; counts nothing."""
        return self.flight.contains(self.argument_key(args, kwargs))

    def warm_call(self, call: Call, *, force: bool = False) -> bool:
        """Fill the entry for ``call`` through single flight (``force``: recompute and replace
        it); True if this call computed it, False if it was already there."""
        if force:
            self.refresh(*call.args, **call.kwargs)
            return True
        compute = self._compute(call.args, call.kwargs)
        state, _ = self.flight.get(self.argument_key(call.args, call.kwargs), compute)
        return state == Fetched.MISS

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """The full cache key of the entry for these arguments."""
        return self.flight.keys(self.argument_key(args, kwargs)).value

    def cache_info(self) -> CacheInfo:
        """Hits, misses, stale hits, computations and errors summed over every process."""
        return self.flight.info()

    def cache_clear_stats(self) -> None:
        """Reset the statistics to zero for every process."""
        self.flight.clear_stats()


class _BoundCachedFunction:
    """A cached method bound to its instance: controls take the same arguments as calls."""

    def __init__(self, cached: CachedFunction[Any], instance: Any) -> None:
        self._cached, self._instance = cached, instance
        functools.update_wrapper(self, cached.__wrapped__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._cached(self._instance, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._cached, name)
        if name in ("invalidate", "refresh", "cache_key", "is_cached"):
            return functools.partial(attribute, self._instance)
        return attribute


def cache_aside(
    timeout: Timeout | Callable[..., Any] = 300,
    *,
    key_maker: KeyMaker = None,
    cache: str | None = None,
    stale: float = 0,
    lock: bool = True,
    lock_timeout: float = 30,
    cache_none: bool = True,
    unless: Callable[[], bool] | None = None,
    version: Any = None,
    warm: Iterable[Any] | Callable[[], Iterable[Any]] | None = None,
) -> Any:
    """Cache the decorated function's results in the cache alias ``cache``.

    ``timeout``: seconds, None (no expiry) or ``timeout(result) -> seconds`` (pass a callable
    by keyword, or as a lambda). ``stale``: seconds an expired entry is still served while one
    caller refreshes it in a background thread. ``lock``: single flight on a miss; a computation
    longer than ``lock_timeout`` seconds lets one waiter take over. ``unless()``: True bypasses
    the cache for that call. ``version``: part of the key. ``warm``: argument sets for
    ``manage.py warm_cache``.

    >>> @cache_aside(timeout=60)
    ... def get_profile(user_id):
    ...     return load_profile(user_id)
    """
    if applied_bare(timeout):
        return cache_aside()(timeout)
    if timeout is not None and not callable(timeout):
        positive_seconds(timeout, "timeout")
    seconds_or_zero(stale, "stale")
    positive_seconds(lock_timeout, "lock_timeout")
    if unless is not None and not callable(unless):
        raise ValueError(f"unless must be a callable taking no arguments, not {unless!r}")

    def decorate(func: Callable[..., T]) -> CachedFunction[T]:
        if inspect.iscoroutinefunction(func):
            raise TypeError(
                f"cache_aside does not support coroutine functions ({func.__qualname__})"
            )
        flight: Flight[T] = Flight(
            function_id=function_id(func),
            alias=cache,
            timeout=timeout,
            stale=float(stale),
            lock=lock,
            lock_timeout=float(lock_timeout),
            version=version,
        )
        cached = CachedFunction(func, flight, key_maker, cache_none, unless, warm)
        checks.record_use(cache, f"@cache_aside {func.__module__}.{func.__qualname__}", False)
        if warm is not None:
            from . import warmup

            warmup.register(cached, warm)
        return cached

    return decorate
