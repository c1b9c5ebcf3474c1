"""``update``: read-modify-write of one cache value without lost updates.

.. code-block:: python

    from cache_tools import update

    update("counter:daily", lambda old: (old or 0) + 1, timeout=3600)

The value lives at the same key as ``cache.set("counter:daily", ...)`` and is read back with
``cache.get``. On Redis this is optimistic concurrency (``WATCH``/``MULTI``): when another
writer changes the value between the read and the write, ``function`` runs again on the new
value, so it must not have side effects. Elsewhere (memcached, uWSGI, files, database) the
read and the write run under a cache_tools lock with a short TTL, renewed while ``function``
runs, so a writer killed mid-update holds the others up for at most that TTL.

Either way ``UpdateConflict`` is raised once ``budget`` seconds pass without success. When the
connection breaks after the write was sent, the write may have been applied or not:
``OutcomeUnknown`` (a ``BackendUnavailable``) says so; read the value back before retrying.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from ._options import positive_seconds
from .backends import get_backend
from .backends.base import Backend
from .errors import UpdateConflict
from .locks import Lock

__all__ = ["aupdate", "update"]

T = TypeVar("T")

#: TTL of the lock that guards an update where the server has no atomic one (renewed while
#: the function runs); at most half the budget.
UPDATE_LOCK_TTL = 2.0


def update(
    key: str,
    function: Callable[[Any], T],
    timeout: float | None = DEFAULT_TIMEOUT,
    cache: str | None = None,
    *,
    budget: float = 10.0,
) -> T:
    """Set ``key`` to ``function(old)`` atomically (``old`` is None when missing); return it.

    ``timeout`` works as in ``cache.set``: seconds, None for no expiry, default the alias's.
    ``budget``: seconds to keep trying before ``UpdateConflict``.

    >>> update("visits", lambda n: (n or 0) + 1, timeout=None)
    1
    """
    backend, seconds, budget = _checked(key, function, timeout, cache, budget)
    if backend.atomic_update:
        return backend.update(key, function, seconds, budget)  # type: ignore[no-any-return]
    guard = _guard(key, budget, cache)
    if not guard.acquire(budget):
        raise _conflict(key, guard, budget)
    try:
        new = function(backend.read_value(key))
        backend.write_value(key, new, seconds)
    finally:
        guard.__exit__(*sys.exc_info())
    return new


async def aupdate(
    key: str,
    function: Callable[[Any], T],
    timeout: float | None = DEFAULT_TIMEOUT,
    cache: str | None = None,
    *,
    budget: float = 10.0,
) -> T:
    """:func:`update` for async code (``function`` is a plain function of the old value).

    >>> await aupdate("visits", lambda n: (n or 0) + 1, timeout=None)
    2
    """
    backend, seconds, budget = _checked(key, function, timeout, cache, budget)
    if backend.atomic_update:
        return await backend.asynchronous().update(key, function, seconds, budget)  # type: ignore[no-any-return]
    guard = _guard(key, budget, cache)
    if not await guard.aacquire(budget):
        raise _conflict(key, guard, budget)
    try:
        new = function(await sync_to_async(backend.read_value, thread_sensitive=False)(key))
        await sync_to_async(backend.write_value, thread_sensitive=False)(key, new, seconds)
    finally:
        await guard.__aexit__(*sys.exc_info())
    return new


def _checked(
    key: str, function: Any, timeout: Any, cache: str | None, budget: Any
) -> tuple[Backend, float | None, float]:
    if not callable(function):
        raise TypeError(f"update() needs a callable taking the old value, not {function!r}")
    budget = positive_seconds(budget, "budget")
    backend = get_backend(cache)
    django_cache = backend.cache
    if isinstance(django_cache, BaseCache):  # django-valkey's caches are not, and do not check
        django_cache.validate_key(key)
    seconds = django_cache.default_timeout if timeout is DEFAULT_TIMEOUT else timeout
    if seconds is not None and (isinstance(seconds, bool) or seconds <= 0):
        raise ValueError(f"timeout must be positive or None, not {timeout!r}")
    return backend, seconds, budget


def _guard(key: str, budget: float, cache: str | None) -> Lock:
    return Lock(f"update:{key}", timeout=min(UPDATE_LOCK_TTL, budget / 2), cache=cache)


def _conflict(key: str, guard: Lock, budget: float) -> UpdateConflict:
    return UpdateConflict(
        f"update of {key!r} could not take its lock in {budget:g}s: held by "
        f"{guard.holder() or 'nobody by now'} (a lock of {guard.timeout:g}s, renewed while "
        "its holder runs)"
    )
