"""``@lock_decorator``: a function (sync or ``async def``) run under a :class:`~.locks.Lock`
keyed by its arguments.

>>> @lock_decorator(timeout=30, on_timeout="skip")
... def rebuild_search_index(): ...
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
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

from asgiref.sync import markcoroutinefunction

from . import checks
from ._options import applied_bare, decorated_function, positive_seconds
from .errors import LockTimeout, LockUnavailable
from .keys import KeyMaker, raw_key
from .locks import Lock, validate_blocking_timeout, validate_transaction_options

__all__ = ["AsyncLockedFunction", "LockedFunction", "lock_decorator"]

logger = logging.getLogger("cache_tools.lock")

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")
OnTimeout = Literal["raise", "skip"] | Callable[..., Any]


def _validate_on_timeout(on_timeout: Any) -> None:
    if on_timeout not in ("raise", "skip") and not callable(on_timeout):
        raise ValueError(f'on_timeout must be "raise", "skip" or a callable, not {on_timeout!r}')


@dataclass(frozen=True)
class _LockOptions:
    key_maker: KeyMaker
    timeout: float
    blocking_timeout: float | None
    cache: str | None
    on_timeout: OnTimeout
    auto_renew: bool
    on_backend_error: Literal["raise", "run"]
    until_commit: bool | None
    using: str | None


class _Locked(Generic[P, R]):
    """What sync and async locked functions share: the options and the lock's key."""

    def __init__(self, func: Callable[P, Any], options: _LockOptions) -> None:
        functools.update_wrapper(cast(Any, self), func)
        self.__wrapped__ = func
        self._options = options

    def __repr__(self) -> str:
        return f"<locked function {self.__wrapped__.__module__}.{self.__wrapped__.__qualname__}>"

    def _handle(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Lock:
        options = self._options
        return Lock(
            raw_key(self.__wrapped__, args, kwargs, options.key_maker),  # Lock makes it safe
            timeout=options.timeout,
            blocking_timeout=options.blocking_timeout,
            cache=options.cache,
            auto_renew=options.auto_renew,
            until_commit=options.until_commit,
            using=options.using,
        )

    def _timed_out(self, handle: Lock) -> LockTimeout:
        return LockTimeout(
            f"{self.__wrapped__.__qualname__}: could not take lock {handle.key!r} "
            f"within {self._options.blocking_timeout}s"
        )

    def lock_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key of the lock these arguments take, as the server stores it."""
        return self._handle(args, kwargs).key

    def is_locked(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """True if some caller holds the lock these arguments take, now."""
        return self._handle(args, kwargs).locked()


class LockedFunction(_Locked[P, R]):
    """What :func:`lock_decorator` returns: the function, with the same parameters and return
    type, run under its lock; ``lock_key(...)`` and ``is_locked(...)`` take its arguments."""

    __wrapped__: Callable[P, R]

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> LockedFunction[P, R]: ...
    @overload
    def __get__(
        self: LockedFunction[Concatenate[S, Q], R], instance: S, owner: type | None = None
    ) -> Callable[Q, R]: ...
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        func, options = self.__wrapped__, self._options
        handle = self._handle(args, kwargs)
        try:
            acquired = handle.acquire()
        except LockUnavailable as exc:
            if options.on_backend_error == "raise":
                raise
            logger.warning("running %s WITHOUT its lock: %s", func.__qualname__, exc)
            return func(*args, **kwargs)
        if not acquired:
            if options.on_timeout == "raise":
                raise self._timed_out(handle)
            if options.on_timeout == "skip":
                return None  # type: ignore[return-value]  # typed R | None by the decorator
            return options.on_timeout(*args, **kwargs)  # type: ignore[no-any-return]
        try:
            return func(*args, **kwargs)
        finally:
            handle._finish(raising=sys.exc_info()[0] is not None)


class AsyncLockedFunction(_Locked[P, R]):
    """The same for an ``async def`` function: the lock is taken and released without
    blocking the event loop (``on_timeout`` may then be a coroutine function)."""

    __wrapped__: Callable[P, Awaitable[R]]

    def __init__(self, func: Callable[P, Awaitable[R]], options: _LockOptions) -> None:
        super().__init__(func, options)
        markcoroutinefunction(self)  # inspect and asgiref see an async callable

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> AsyncLockedFunction[P, R]: ...
    @overload
    def __get__(
        self: AsyncLockedFunction[Concatenate[S, Q], R], instance: S, owner: type | None = None
    ) -> Callable[Q, Awaitable[R]]: ...
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        func, options = self.__wrapped__, self._options
        handle = self._handle(args, kwargs)
        try:
            acquired = await handle.aacquire()
        except LockUnavailable as exc:
            if options.on_backend_error == "raise":
                raise
            logger.warning("running %s WITHOUT its lock: %s", func.__qualname__, exc)
            return await func(*args, **kwargs)
        if not acquired:
            if options.on_timeout == "raise":
                raise self._timed_out(handle)
            if options.on_timeout == "skip":
                return None  # type: ignore[return-value]  # typed R | None by the decorator
            fallback = options.on_timeout(*args, **kwargs)
            return await fallback if inspect.isawaitable(fallback) else fallback  # type: ignore[no-any-return]
        try:
            return await func(*args, **kwargs)
        finally:
            raising = sys.exc_info()[0] is not None
            await handle._afinish(raising)


class LockDecorator(Protocol):
    """What ``lock_decorator(...)`` returns: a decorator for sync and ``async def``
    functions."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncLockedFunction[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> LockedFunction[P, R]: ...


class SkippingLockDecorator(Protocol):
    """``lock_decorator(on_timeout="skip")``: the function may return None instead."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncLockedFunction[P, R | None]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> LockedFunction[P, R | None]: ...


@overload
def lock_decorator(  # type: ignore[overload-overlap]
    key_maker: Callable[P, Coroutine[Any, Any, R]], /
) -> AsyncLockedFunction[P, R]: ...
@overload
def lock_decorator(key_maker: Callable[P, R], /) -> LockedFunction[P, R]: ...  # type: ignore[overload-overlap]
@overload
def lock_decorator(
    key_maker: KeyMaker = None,
    *,
    timeout: float = 30,
    blocking_timeout: float | None = None,
    cache: str | None = None,
    on_timeout: Literal["skip"],
    auto_renew: bool = True,
    on_backend_error: Literal["raise", "run"] = "raise",
    until_commit: bool | None = None,
    using: str | None = None,
) -> SkippingLockDecorator: ...
@overload
def lock_decorator(
    key_maker: KeyMaker = None,
    *,
    timeout: float = 30,
    blocking_timeout: float | None = None,
    cache: str | None = None,
    on_timeout: Literal["raise"] | Callable[..., Any] = "raise",
    auto_renew: bool = True,
    on_backend_error: Literal["raise", "run"] = "raise",
    until_commit: bool | None = None,
    using: str | None = None,
) -> LockDecorator: ...


def lock_decorator(
    key_maker: Any = None,
    *,
    timeout: float = 30,
    blocking_timeout: float | None = None,
    cache: str | None = None,
    on_timeout: OnTimeout = "raise",
    auto_renew: bool = True,
    on_backend_error: Literal["raise", "run"] = "raise",
    until_commit: bool | None = None,
    using: str | None = None,
) -> Any:
    """Run the decorated function under a lock keyed by ``key_maker`` (default: function + args).

    Works bare (``@lock_decorator``) or called (``@lock_decorator(timeout=10)``). Pass a callable
    ``key_maker`` by keyword (a lambda may also be passed positionally). On timeout,
    ``on_timeout="raise"`` raises ``LockTimeout``, ``"skip"`` returns None, and a callable is
    called with the function's arguments instead. If the cache server cannot be reached,
    ``LockUnavailable`` is raised and the function does not run; ``on_backend_error="run"`` runs
    it unlocked instead (unsafe: only for work that tolerates running twice at once). The
    decorated function keeps its parameters and return type for type checkers (``R | None``
    with ``on_timeout="skip"``). Called inside ``atomic()`` on the database ``using``, the lock
    is held until the transaction's end (COMMIT or ROLLBACK), so that the next caller sees
    what this one wrote (``until_commit``: see :func:`lock`).

    >>> @lock_decorator(key_maker=lambda request, part: "api_stats_calculations")
    ... def api_stats_calculations(request, part): ...
    """
    if applied_bare(key_maker):
        return lock_decorator()(key_maker)
    positive_seconds(timeout, "timeout")
    validate_blocking_timeout(blocking_timeout)
    _validate_on_timeout(on_timeout)
    if on_backend_error not in ("raise", "run"):
        raise ValueError(f'on_backend_error must be "raise" or "run", not {on_backend_error!r}')
    validate_transaction_options(until_commit, using)
    options = _LockOptions(
        key_maker,
        timeout,
        blocking_timeout,
        cache,
        on_timeout,
        auto_renew,
        on_backend_error,
        until_commit,
        using,
    )

    def decorate(func: Callable[P, Any]) -> _Locked[P, Any]:
        func = decorated_function(func, "@lock_decorator")
        checks.record_use(cache, f"@lock_decorator {func.__module__}.{func.__qualname__}", True)
        if inspect.iscoroutinefunction(func):
            return AsyncLockedFunction(func, options)
        return LockedFunction(func, options)

    return decorate
