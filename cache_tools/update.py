"""``update``: read-modify-write of one cache value without lost updates.

.. code-block:: python

    from cache_tools import update

    update("counter:daily", lambda old: (old or 0) + 1, timeout=3600)

The value lives at the same key as ``cache.set("counter:daily", ...)`` and is read back with
``cache.get``. On Redis this is optimistic concurrency (``WATCH``/``MULTI``): when another
writer changes the value between the read and the write, ``function`` runs again on the new
value, up to ``retries`` times, then ``UpdateConflict`` is raised. ``function`` may run more
than once, so it must not have side effects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT

from .backends import get_backend

__all__ = ["update"]

T = TypeVar("T")


def update(
    key: str,
    function: Callable[[Any], T],
    timeout: Any = DEFAULT_TIMEOUT,
    cache: str | None = None,
    *,
    retries: int = 100,
) -> T:
    """Set ``key`` to ``function(old)`` atomically (``old`` is None when missing); return it.

    ``timeout`` works as in ``cache.set``: seconds, None for no expiry, default the alias's.
    """
    if not callable(function):
        raise TypeError(f"update() needs a callable taking the old value, not {function!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
    backend = get_backend(cache)
    django_cache = backend.cache
    django_cache.validate_key(key)
    seconds = django_cache.default_timeout if timeout is DEFAULT_TIMEOUT else timeout
    if seconds is not None and (isinstance(seconds, bool) or seconds <= 0):
        raise ValueError(f"timeout must be positive or None, not {timeout!r}")
    return backend.update(key, function, seconds, retries)
