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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from django.db import connections

from .backends import get_backend
from .backends.base import Backend, EntryKeys, Fetched
from .errors import BackendUnavailable, UnserializableValue
from .keys import KeyMaker, function_id, make_key
from .locks import _is_function_to_decorate, validate_timeout

__all__ = ["CacheInfo", "CachedFunction", "Call", "Flight", "cache_aside"]

logger = logging.getLogger("cache_tools.aside")

T = TypeVar("T")
Timeout = float | None | Callable[[Any], float | None]

_ARGUMENT_KEY_LENGTH = 120


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
    """Per-process outage state: one warning per outage, errors counted until they can be sent."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._down: set[str] = set()
        self._pending: dict[tuple[str, str], int] = {}

    def failed(self, alias: str, stats_key: str, error: Exception) -> None:
        with self._guard:
            first = alias not in self._down
            self._down.add(alias)
            self._pending[alias, stats_key] = self._pending.get((alias, stats_key), 0) + 1
        if first:
            logger.warning("cache %r is unavailable, computing without it: %s", alias, error)

    def pending(self, alias: str, stats_key: str) -> int:
        return self._pending.get((alias, stats_key), 0)

    def recovered(self, backend: Backend) -> None:
        """Called after a successful round trip: report the recovery and send pending errors."""
        if backend.alias not in self._down:
            return
        with self._guard:
            self._down.discard(backend.alias)
            pending = {k: n for k, n in self._pending.items() if k[0] == backend.alias}
            for k in pending:
                del self._pending[k]
        logger.warning("cache %r is reachable again", backend.alias)
        try:
            for (_, stats_key), count in pending.items():
                backend.add_counts(stats_key, {"errors": count})
        except BackendUnavailable:
            with self._guard:
                for k, n in pending.items():
                    self._pending[k] = self._pending.get(k, 0) + n

    def forget(self, alias: str, stats_key: str) -> None:
        with self._guard:
            self._pending.pop((alias, stats_key), None)


_outages = _Outages()


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
        token = secrets.token_hex(16) if self.lock else None
        while True:
            try:
                fetched = backend.fetch(keys, token, self.lock_timeout)
            except BackendUnavailable as exc:
                _outages.failed(backend.alias, keys.stats, exc)
                result, _ = compute()
                return Fetched.MISS, result
            _outages.recovered(backend)
            if fetched.state == Fetched.HIT:
                return fetched.state, fetched.value
            if fetched.state == Fetched.STALE:
                if fetched.fence:
                    self._refresh_in_background(backend, keys, compute, token, fetched)
                return fetched.state, fetched.value
            if fetched.wait is None:
                return Fetched.MISS, self._compute_and_store(
                    backend, keys, compute, token, fetched, {"misses": 1}
                )
            try:
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
        try:
            if token:
                backend.release(keys.lock, token, wake_all=wake_all)
            backend.add_counts(keys.stats, counts)
        except BackendUnavailable as exc:
            _outages.failed(backend.alias, keys.stats, exc)

    def _refresh_in_background(
        self,
        backend: Backend,
        keys: EntryKeys,
        compute: Callable[[], tuple[T, Any]],
        token: str | None,
        fetched: Fetched,
    ) -> None:
        def refresh() -> None:
            try:
                self._compute_and_store(backend, keys, compute, token, fetched, {})
            except Exception:
                logger.exception("background refresh of %s failed", self.function_id)
            finally:
                connections.close_all()  # this thread's own database connections

        threading.Thread(target=refresh, name=f"cache-tools-refresh {self.function_id}").start()

    def invalidate(self, argument_key: str) -> bool:
        backend = self.backend
        return backend.invalidate(self.keys(argument_key, backend))

    def invalidate_all(self) -> None:
        backend = self.backend
        backend.bump_generation(backend.entry_keys(self.function_id, "", self.version).generation)

    def info(self) -> CacheInfo:
        backend = self.backend
        stats_key = backend.stats_key(self.function_id)
        counts = backend.read_counts(stats_key)
        errors = counts.get("errors", 0) + _outages.pending(backend.alias, stats_key)
        return CacheInfo(
            hits=counts.get("hits", 0),
            misses=counts.get("misses", 0),
            stale_hits=counts.get("stale_hits", 0),
            computations=counts.get("computations", 0),
            errors=errors,
        )

    def clear_stats(self) -> None:
        backend = self.backend
        stats_key = backend.stats_key(self.function_id)
        _outages.forget(backend.alias, stats_key)
        backend.delete(stats_key)


NOT_STORED: Any = object()


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
            max_length=_ARGUMENT_KEY_LENGTH,
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
        if name in ("invalidate", "refresh", "cache_key"):
            return functools.partial(attribute, self._instance)
        return attribute


def _validate_timeout_option(timeout: Any) -> None:
    if timeout is None or callable(timeout):
        return
    validate_timeout(timeout)


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
    if _is_function_to_decorate(timeout):
        return cache_aside()(timeout)
    _validate_timeout_option(timeout)
    if isinstance(stale, bool) or not isinstance(stale, (int, float)) or stale < 0:
        raise ValueError(f"stale must be 0 or a positive number of seconds, not {stale!r}")
    validate_timeout(lock_timeout, "lock_timeout")
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
        if warm is not None:
            from . import warmup

            warmup.register(cached, warm)
        return cached

    return decorate
