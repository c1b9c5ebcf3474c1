"""System checks for ``cache_tools`` (``manage.py check``); the ids are stable.

``cache_tools.E001``
    The ``CACHE_TOOLS`` setting is invalid.
``cache_tools.E002``
    ``CACHE_TOOLS["CACHE"]`` or a decorator names an alias that is not in ``CACHES``.
``cache_tools.W001``
    An alias used for locks or single flight is process-local (``LocMemCache``).
``cache_tools.W002``
    A Redis alias has no ``KEY_PREFIX``: ``cache.clear()`` and ``clear_cache --flush`` empty the
    whole database, other applications' keys included.
``cache_tools.W003``
    A lock uses a ``DummyCache`` alias: it would never exclude anything.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from . import conf

LOCAL_MEMORY = "django.core.cache.backends.locmem.LocMemCache"
DUMMY = "django.core.cache.backends.dummy.DummyCache"
REDIS = ("django_redis.cache.RedisCache", "django.core.cache.backends.redis.RedisCache")

# (alias or None for the default, what uses it, whether it is a lock), filled by decorators.
_uses: list[tuple[str | None, str, bool]] = []


def record_use(alias: str | None, user: str, is_lock: bool) -> None:
    """Remember that ``user`` (a decorated function) uses ``alias`` for a lock or for single
    flight, for the checks below."""
    _uses.append((alias, user, is_lock))


def _backend(alias: str) -> str:
    return settings.CACHES[alias].get("BACKEND", "")


def warn_if_process_local_under_uwsgi() -> None:
    """At start-up under uWSGI, log once per process if the default alias is process-local."""
    try:
        import uwsgi  # noqa: F401 - only importable inside uWSGI
    except ImportError:
        return
    alias = conf.default_alias()
    if alias in settings.CACHES and _backend(alias) == LOCAL_MEMORY:
        logging.getLogger("cache_tools").warning(
            "cache_tools: cache alias %r is LocMemCache; each uWSGI worker (pid %s) has its "
            "own copy, so locks and single flight do not hold across workers",
            alias,
            os.getpid(),
        )


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems = conf.validate(getattr(settings, "CACHE_TOOLS", {}))
    if problems:
        hint = "See the CACHE_TOOLS reference in the docs."
        return [Error(message, hint=hint, id="cache_tools.E001") for message in problems]
    default = conf.default_alias()
    uses = [(default, 'CACHE_TOOLS["CACHE"]', False)]
    uses += [(alias or default, user, is_lock) for alias, user, is_lock in _uses]
    messages: list[CheckMessage] = []
    reported: set[tuple[str, str]] = set()
    for alias, user, is_lock in uses:
        if alias not in settings.CACHES:
            messages.append(
                Error(
                    f"{user} uses cache alias {alias!r}, which is not in CACHES.",
                    hint=f"Use one of {sorted(settings.CACHES)} or add {alias!r} to CACHES.",
                    id="cache_tools.E002",
                )
            )
            continue
        backend = _backend(alias)
        if backend == LOCAL_MEMORY and (alias, "W001") not in reported:
            reported.add((alias, "W001"))
            messages.append(
                Warning(
                    f"Cache alias {alias!r} (used by {user}) is LocMemCache, which lives in one "
                    "process: under uWSGI, gunicorn or any multi-process server each worker has "
                    "its own copy, so locks and single flight do not hold across workers.",
                    hint=f"Point {alias!r} at a shared backend (django-redis, memcached).",
                    id="cache_tools.W001",
                )
            )
        if backend == DUMMY and is_lock and (alias, "W003") not in reported:
            reported.add((alias, "W003"))
            messages.append(
                Warning(
                    f"{user} locks on cache alias {alias!r}, a DummyCache: the lock would never "
                    "exclude anything (cache_tools refuses it at run time).",
                    hint="Use a shared backend for locks.",
                    id="cache_tools.W003",
                )
            )
    for alias, options in settings.CACHES.items():
        if options.get("BACKEND") in REDIS and not options.get("KEY_PREFIX"):
            messages.append(
                Warning(
                    f"Redis cache alias {alias!r} has no KEY_PREFIX: cache.clear() and "
                    "clear_cache --flush run FLUSHDB and delete every other application's keys in "
                    "that database, and clear_cache cannot tell this alias's keys from theirs.",
                    hint=f'Set CACHES[{alias!r}]["KEY_PREFIX"] to a name of this project.',
                    id="cache_tools.W002",
                )
            )
    return messages
