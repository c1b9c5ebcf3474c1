"""Cache-aside with single flight, stale-while-revalidate and statistics shared by all processes.

.. code-block:: python

    from cache_tools import cache_aside

    @cache_aside(timeout=300, stale=60)
    def get_profile(user_id): ...

    get_profile(7)              # a hit, or exactly one caller computes while the others wait
    get_profile.invalidate(7)   # True if an entry was there
    get_profile.cache_info()    # CacheInfo(hits=..., misses=..., ...) across every process

On an ``async def`` function the decorator returns an async callable with awaitable twins of
the controls (``ainvalidate``, ``ainvalidate_all``, ``arefresh``, ``acache_info``); sync and
async callers of one function share keys and exclude each other. The single-flight and stale
logic lives in :mod:`cache_tools.flight`; this module binds a function's arguments to keys and
gives it its controls.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import (
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from asgiref.sync import async_to_sync, markcoroutinefunction

from . import checks, signals, warmup
from ._options import (
    applied_bare,
    decorated_function,
    local_copies,
    positive_seconds,
    seconds_or_zero,
)
from .backends import resolve_alias
from .backends.base import MISS
from .dependencies import Dependencies, DependsOn
from .flight import NOT_STORED, UNCACHED, Flight, Timeout
from .keys import KeyMaker, function_id, make_key
from .stats import CacheInfo
from .tags import entry_tags, note_tagged
from .warmup import Call, WarmOutcome

__all__ = [
    "AsyncCachedFunction",
    "BoundAsyncCachedFunction",
    "BoundCachedFunction",
    "CacheInfo",
    "CachedFunction",
    "Call",
    "cache_aside",
    "cached_functions",
]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")

#: Length budget of the arguments part of an entry key, so that whole keys stay memcached-safe.
ARGUMENT_KEY_LENGTH = 120

#: Argument types whose equality means an equal key (``1 == True == 1.0`` do not give one key,
#: so bool and float are left out): a call made only of them is looked up in a memo.
_MEMO_TYPES = frozenset({str, int, bytes, type(None)})
#: Argument keys remembered, over every function (then the memo starts again): as many as
#: the adapters' entry-key caches hold, so 10 000 hot keys cost what one does.
ARGUMENT_MEMO_SIZE = 16384
_argument_keys: dict[tuple[Any, ...], str] = {}  # (function, *arguments) -> argument key

_all_cached_functions: weakref.WeakSet[_Cached[..., Any]] = weakref.WeakSet()


def cached_functions() -> list[_Cached[..., Any]]:
    """Every ``cache_aside`` function defined in this process, by dotted path (for dashboards)."""
    return sorted(_all_cached_functions, key=lambda f: f.flight.function_id)


def _outcome(state: str) -> WarmOutcome:
    if state == UNCACHED:
        return "not stored"
    return "computed" if state == MISS else "warm"


class _Cached(Generic[P, R]):
    """What sync and async cached functions share: keys, and the controls that need no
    result of the function."""

    def __init__(
        self,
        func: Callable[P, Any],
        flight: Flight[R],
        key_maker: KeyMaker,
        cache_none: bool,
        unless: Callable[[], bool] | None,
        tags: Callable[..., Iterable[str]] | None = None,
        dependencies: Dependencies | None = None,
    ) -> None:
        functools.update_wrapper(cast(Any, self), func)
        self.__wrapped__ = func
        self.flight = flight
        self.key_maker = key_maker
        self.cache_none = cache_none
        self.unless = unless
        #: ``depends_on``, kept here (the registry of dependencies holds it weakly).
        self.dependencies = dependencies
        self._tags = tags
        self._fixed_tags = () if dependencies is None else dependencies.tags
        #: Whether entries carry tags (``tags=`` or ``depends_on=``).
        self.tagged = tags is not None or bool(self._fixed_tags)
        # A callable key_maker may read more than the arguments (the active language, say).
        self._memoised = not callable(key_maker)
        _all_cached_functions.add(self)
        signals.name_sender(flight.function_id, self)

    def __repr__(self) -> str:
        return f"<cached function {self.flight.function_id}>"

    def argument_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The arguments' part of the entry key; remembered for plain positional arguments
        (the hit path's largest cost after the round trip)."""
        if not self._memoised or kwargs:
            return self._make_argument_key(args, kwargs)
        for arg in args:
            if type(arg) not in _MEMO_TYPES:
                return self._make_argument_key(args, kwargs)
        call = (self, *args)
        key = _argument_keys.get(call)
        if key is None:
            key = self._make_argument_key(args, kwargs)
            if "#" not in key:  # a digest: long arguments, not worth keeping alive
                if len(_argument_keys) >= ARGUMENT_MEMO_SIZE:
                    _argument_keys.clear()
                _argument_keys[call] = key
        return key

    def entry_tags(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The tags the entry for these arguments carries: ``tags(*args, **kwargs)`` and
        those of ``depends_on``."""
        if self._tags is None:
            return self._fixed_tags
        found = entry_tags(self._tags(*args, **kwargs), f"tags() of {self.flight.function_id}")
        return tuple(sorted({*found, *self._fixed_tags})) if self._fixed_tags else found

    def _make_argument_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return make_key(
            self.__wrapped__,
            args,
            kwargs,
            self.key_maker,
            max_length=ARGUMENT_KEY_LENGTH,
            with_function=False,
        )

    def _to_store(self, result: Any) -> Any:
        return NOT_STORED if result is None and not self.cache_none else result

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry for these arguments; True if one was there."""
        return self.flight.invalidate(self.argument_key(args, kwargs))

    def invalidate_all(self) -> None:
        """Make every entry of this function unreachable, in one O(1) operation."""
        self.flight.invalidate_scope()

    def is_cached(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """True if an entry (fresh or stale) exists for these arguments; counts nothing."""
        tags = self.entry_tags(args, kwargs) if self.tagged else ()
        return self.flight.contains(self.argument_key(args, kwargs), tags=tags)

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The full cache key of the entry for these arguments, as the server stores it."""
        return self.flight.keys(self.argument_key(args, kwargs)).value

    def cache_info(self) -> CacheInfo:
        """Hits, misses, stale hits, computations and errors summed over every process."""
        return self.flight.info()

    def cache_clear_stats(self) -> None:
        """Reset the statistics to zero for every process."""
        self.flight.clear_stats()

    @property
    def alias(self) -> str:
        """The cache alias this function's entries live in."""
        return resolve_alias(self.flight.alias)


class CachedFunction(_Cached[P, R]):
    """What :func:`cache_aside` returns for a function: the function, with the same
    parameters and return type, plus cache controls as methods that take the function's own
    arguments.

    >>> get_profile(7)                  # type-checked like the undecorated function
    >>> get_profile.invalidate(7)       # so are the controls
    """

    __wrapped__: Callable[P, R]

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> CachedFunction[P, R]: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], R], instance: S, owner: type | None = None
    ) -> BoundCachedFunction[Q, R]: ...
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundCachedFunction(self, instance)

    def _compute(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[], tuple[R, Any]]:
        def compute() -> tuple[R, Any]:
            result = self.__wrapped__(*args, **kwargs)
            return result, self._to_store(result)

        return compute

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.unless is not None and self.unless():
            return self.__wrapped__(*args, **kwargs)
        key = self.argument_key(args, kwargs)
        tags = self.entry_tags(args, kwargs) if self.tagged else ()
        _, value = self.flight.get(key, self._compute(args, kwargs), None, tags)
        return value  # type: ignore[no-any-return]

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute for these arguments now, store and return the new value."""
        key, tags = self.argument_key(args, kwargs), self.entry_tags(args, kwargs)
        return self.flight.refresh(key, self._compute(args, kwargs), tags=tags)[1]

    def warm_call(self, call: Call, *, force: bool = False) -> WarmOutcome:
        """Fill the entry for ``call`` through single flight (``force``: recompute and replace
        it). Returns ``"computed"``, ``"warm"`` (already there) or ``"not stored"`` (computed,
        but the cache was unreachable or refused the value)."""
        key = self.argument_key(call.args, call.kwargs)
        tags = self.entry_tags(call.args, call.kwargs)
        compute = self._compute(call.args, call.kwargs)
        if force:
            state, _ = self.flight.refresh(key, compute, tags=tags)
        else:
            state, _ = self.flight.get(key, compute, tags=tags)
        return _outcome(state)


class AsyncCachedFunction(_Cached[P, R]):
    """What :func:`cache_aside` returns for an ``async def`` function: awaitable calls, the
    sync controls, and their awaitable twins (``ainvalidate``, ``ainvalidate_all``,
    ``arefresh``, ``acache_info``).

    >>> await get_profile(7)
    >>> await get_profile.ainvalidate(7)
    """

    __wrapped__: Callable[P, Awaitable[R]]

    def __init__(self, func: Callable[P, Awaitable[R]], flight: Flight[R], *args: Any) -> None:
        super().__init__(func, flight, *args)
        markcoroutinefunction(self)  # inspect and asgiref see an async callable

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __get__(
        self: AsyncCachedFunction[Concatenate[S, Q], R], instance: S, owner: type | None = None
    ) -> BoundAsyncCachedFunction[Q, R]: ...
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundAsyncCachedFunction(self, instance)

    def _compute(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[], Awaitable[tuple[R, Any]]]:
        async def compute() -> tuple[R, Any]:
            result = await self.__wrapped__(*args, **kwargs)
            return result, self._to_store(result)

        return compute

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.unless is not None and self.unless():
            return await self.__wrapped__(*args, **kwargs)
        key = self.argument_key(args, kwargs)
        tags = self.entry_tags(args, kwargs) if self.tagged else ()
        _, value = await self.flight.aget(key, self._compute(args, kwargs), None, tags)
        return value  # type: ignore[no-any-return]

    async def arefresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute for these arguments now, store and return the new value."""
        key, tags = self.argument_key(args, kwargs), self.entry_tags(args, kwargs)
        return (await self.flight.arefresh(key, self._compute(args, kwargs), tags=tags))[1]

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """:meth:`arefresh` from sync code."""
        return async_to_sync(self.arefresh)(*args, **kwargs)

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry for these arguments; True if one was there."""
        return await self.flight.ainvalidate(self.argument_key(args, kwargs))

    async def ainvalidate_all(self) -> None:
        """Make every entry of this function unreachable, in one O(1) operation."""
        await self.flight.ainvalidate_scope()

    async def acache_info(self) -> CacheInfo:
        """Hits, misses, stale hits, computations and errors summed over every process."""
        return await self.flight.ainfo()

    def warm_call(self, call: Call, *, force: bool = False) -> WarmOutcome:
        """As for sync functions; runs the coroutine function to completion."""
        key = self.argument_key(call.args, call.kwargs)
        tags = self.entry_tags(call.args, call.kwargs)
        compute = self._compute(call.args, call.kwargs)

        async def warm() -> tuple[str, Any]:
            if force:
                return await self.flight.arefresh(key, compute, tags=tags)
            return await self.flight.aget(key, compute, tags=tags)

        return _outcome(async_to_sync(warm)()[0])


class _Bound(Generic[P, R]):
    """A cached method bound to its instance: controls take the method's arguments without
    ``self``, as a bound method does."""

    def __init__(self, cached: _Cached[..., R], instance: Any) -> None:
        self._cached, self._instance = cached, instance
        functools.update_wrapper(cast(Any, self), cached.__wrapped__)

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        return self._cached.invalidate(self._instance, *args, **kwargs)

    def is_cached(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        return self._cached.is_cached(self._instance, *args, **kwargs)

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        return self._cached.cache_key(self._instance, *args, **kwargs)

    def invalidate_all(self) -> None:
        self._cached.invalidate_all()

    def cache_info(self) -> CacheInfo:
        return self._cached.cache_info()

    def cache_clear_stats(self) -> None:
        self._cached.cache_clear_stats()

    @property
    def flight(self) -> Flight[R]:
        return self._cached.flight

    def argument_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return self._cached.argument_key((self._instance, *args), kwargs)

    def entry_tags(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        return self._cached.entry_tags((self._instance, *args), kwargs)


class BoundCachedFunction(_Bound[P, R]):
    def __init__(self, cached: CachedFunction[..., R], instance: Any) -> None:
        super().__init__(cached, instance)
        self._function = cached

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._function(self._instance, *args, **kwargs)

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._function.refresh(self._instance, *args, **kwargs)


class BoundAsyncCachedFunction(_Bound[P, R]):
    def __init__(self, cached: AsyncCachedFunction[..., R], instance: Any) -> None:
        super().__init__(cached, instance)
        self._function = cached

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._function(self._instance, *args, **kwargs)

    async def arefresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._function.arefresh(self._instance, *args, **kwargs)

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        return await self._function.ainvalidate(self._instance, *args, **kwargs)

    async def ainvalidate_all(self) -> None:
        await self._function.ainvalidate_all()

    async def acache_info(self) -> CacheInfo:
        return await self._function.acache_info()


Warm = Iterable[Any] | Callable[[], Iterable[Any]]


class CacheAsideDecorator(Protocol):
    """What ``cache_aside(...)`` returns: a decorator for sync and ``async def`` functions."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> CachedFunction[P, R]: ...


@overload
def cache_aside(  # type: ignore[overload-overlap]
    timeout: Callable[P, Coroutine[Any, Any, R]], /
) -> AsyncCachedFunction[P, R]: ...
@overload
def cache_aside(timeout: Callable[P, R], /) -> CachedFunction[P, R]: ...  # type: ignore[overload-overlap]
@overload
def cache_aside(
    timeout: Timeout = 300,
    *,
    key_maker: KeyMaker = None,
    cache: str | None = None,
    stale: float = 0,
    lock: bool = True,
    lock_timeout: float = 30,
    cache_none: bool = True,
    unless: Callable[[], bool] | None = None,
    version: Any = None,
    warm: Warm | None = None,
    local: bool | int = False,
    local_copy: Literal["bytes", "object"] = "bytes",
    tags: Callable[..., Iterable[str]] | None = None,
    depends_on: DependsOn | None = None,
) -> CacheAsideDecorator: ...


def cache_aside(
    timeout: Any = 300,
    *,
    key_maker: KeyMaker = None,
    cache: str | None = None,
    stale: float = 0,
    lock: bool = True,
    lock_timeout: float = 30,
    cache_none: bool = True,
    unless: Callable[[], bool] | None = None,
    version: Any = None,
    warm: Warm | None = None,
    local: bool | int = False,
    local_copy: Literal["bytes", "object"] = "bytes",
    tags: Callable[..., Iterable[str]] | None = None,
    depends_on: DependsOn | None = None,
) -> Any:
    """Cache the decorated function's results in the cache alias ``cache``.

    ``timeout``: seconds, None (no expiry) or ``timeout(result) -> seconds`` (pass a callable
    by keyword, or as a lambda). ``stale``: seconds an expired entry is still served while one
    caller refreshes it in the background. ``lock``: single flight on a miss; a computation
    longer than ``lock_timeout`` seconds lets one waiter take over. ``unless()``: True bypasses
    the cache for that call. ``version``: part of the key. ``warm``: argument sets for
    ``manage.py warm_cache``. ``local``: also keep copies in this process (``True``: up to
    1,000 entries, or a number), served without a round trip and dropped by Redis's own
    invalidations in every process (Redis aliases only); ``local_copy="object"`` keeps them
    decoded (faster, but callers of this process share one object). ``tags(*args,
    **kwargs)``: the names the entry is also invalidated by (:func:`invalidate_tags`);
    ``depends_on``: models whose committed writes invalidate the entries (a list), or a dict
    ``{Model: instance -> tags}`` for writes through instances (see :doc:`invalidation`).
    Works on ``async def``
    functions too (awaitable calls, and ``a``-prefixed twins of the controls). The decorated
    function keeps its parameters and return type for type checkers.

    >>> @cache_aside(timeout=60)
    ... def get_profile(user_id: int) -> Profile:
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
    local_size = local_copies(local)
    if local_copy not in ("bytes", "object"):
        raise ValueError(f'local_copy must be "bytes" or "object", not {local_copy!r}')
    if tags is not None and not callable(tags):
        raise TypeError(f"tags must be a callable returning the entry's tags, not {tags!r}")

    def decorate(func: Callable[P, Any]) -> _Cached[P, Any]:
        func = decorated_function(func, "@cache_aside")
        flight: Flight[Any] = Flight(
            function_id=function_id(func),
            alias=cache,
            timeout=timeout,
            stale=float(stale),
            lock=lock,
            lock_timeout=float(lock_timeout),
            version=version,
            local=local_size,
            keep_objects=local_copy == "object",
        )
        kind = AsyncCachedFunction if inspect.iscoroutinefunction(func) else CachedFunction
        dependencies = None if depends_on is None else Dependencies(depends_on, cache)
        cached = kind(func, flight, key_maker, cache_none, unless, tags, dependencies)
        if cached.tagged:
            note_tagged(cache, flight.function_id)
        user = f"@cache_aside {func.__module__}.{func.__qualname__}"
        checks.record_use(cache, user, False, local=local_size is not None)
        if warm is not None:
            warmup.register(cached, warm)
        return cached

    return decorate
