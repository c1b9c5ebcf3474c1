"""System checks for ``cache_tools`` (``manage.py check``); the ids are stable.

``cache_tools.E001``
    The ``CACHE_TOOLS`` setting is invalid.
``cache_tools.E002``
    ``CACHE_TOOLS["CACHE"]`` or a decorator names an alias that is not in ``CACHES``.
``cache_tools.E003``
    An alias used by cache_tools has a cache class cache_tools has no adapter for (name one in
    ``CACHE_TOOLS["ADAPTERS"]``).
``cache_tools.W001``
    An alias used for locks or single flight is process-local (``LocMemCache``).
``cache_tools.W002``
    An alias whose ``cache.clear()`` empties a shared server (Redis, memcached) has no
    ``KEY_PREFIX``: ``clear_cache --flush`` would delete other applications' keys, and
    ``clear_cache`` cannot tell this alias's keys from theirs.
``cache_tools.W003``
    A lock uses an alias that stores nothing (``DummyCache``): it would never exclude anything.
``cache_tools.W004``
    A function keeps local copies (``cache_aside(local=...)``) on an alias that cannot track
    changes (only Redis can); the copies are not kept.
``cache_tools.W005`` (``check --deploy`` only: it connects)
    Locks live on a server that evicts keys to make room (any ``maxmemory-policy`` but
    ``noeviction``): a held lock's key can be dropped and two holders overlap. Also logged
    once per process at the first lock on such an alias.

The checks ask each alias's adapter for its capabilities; they never compare ``BACKEND``
strings.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

from . import conf
from .backends import adapter_class
from .backends.base import Backend

__all__ = [
    "check_eviction",
    "check_settings",
    "eviction_warning",
    "forks_without_hooks",
    "record_use",
    "warn_if_process_local_under_uwsgi",
    "warn_if_uwsgi_forks_without_hooks",
]

# (alias or None for the default, what uses it, whether it is a lock, whether it keeps local
# copies), filled by decorators.
_uses: list[tuple[str | None, str, bool, bool]] = []


def record_use(alias: str | None, user: str, is_lock: bool, local: bool = False) -> None:
    """Remember that ``user`` (a decorated function) uses ``alias`` for a lock or for single
    flight (keeping local copies or not), for the checks below."""
    _uses.append((alias, user, is_lock, local))


def warn_if_process_local_under_uwsgi() -> None:
    """At start-up under uWSGI, log once per process if the default alias is process-local."""
    try:
        import uwsgi  # noqa: F401 - only importable inside uWSGI
    except ImportError:
        return
    alias = conf.default_alias()
    try:
        shared = alias not in settings.CACHES or adapter_class(alias).shared
    except ImproperlyConfigured:
        return
    if not shared:
        logging.getLogger("cache_tools").warning(
            "cache_tools: cache alias %r is process-local; each uWSGI worker (pid %s) has its "
            "own copy, so locks and single flight do not hold across workers",
            alias,
            os.getpid(),
        )


def _uwsgi_option(options: dict[str, Any], name: str) -> Any:
    """An option's value in ``uwsgi.opt``: bytes, True for a bare flag, the last one when
    repeated, None when absent."""
    value = options.get(name)
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def _uwsgi_flag(options: dict[str, Any], name: str) -> bool:
    """An on/off option as uWSGI reads it: on when given bare or with a value other than
    ``false``, ``off``, ``no`` or ``0``."""
    value = _uwsgi_option(options, name)
    if isinstance(value, bytes):
        return value.strip().lower() not in (b"false", b"off", b"no", b"0")
    return bool(value)


def _uwsgi_number(options: dict[str, Any], name: str) -> int:
    try:
        return int(_uwsgi_option(options, name) or 0)
    except ValueError:
        return 0


def forks_without_hooks(options: dict[str, Any]) -> bool:
    """Whether uWSGI, with these options (``uwsgi.opt``), loads the application and then forks
    workers from it without running Python's fork hooks."""
    if any(_uwsgi_flag(options, name) for name in ("lazy-apps", "lazy")):
        return False  # each worker loads the application after the fork
    if _uwsgi_flag(options, "py-call-uwsgi-fork-hooks"):
        return False
    workers = max(_uwsgi_number(options, name) for name in ("processes", "workers"))
    return _uwsgi_flag(options, "master") or workers > 1  # else nothing forks


def warn_if_uwsgi_forks_without_hooks() -> None:
    """At start-up under uWSGI, log once if it loads the application and forks its workers
    without running Python's fork hooks: a worker could then inherit a lock held by one of
    the master's threads and wait for it for ever (see :doc:`deployment`)."""
    try:
        import uwsgi
    except ImportError:
        return
    if forks_without_hooks(uwsgi.opt):
        logging.getLogger("cache_tools").warning(
            "cache_tools: uWSGI loads the application in its master and forks workers without "
            "Python's fork hooks, so a worker can inherit a lock held by one of the master's "
            "threads and wait for it for ever; set py-call-uwsgi-fork-hooks = true (or "
            "lazy-apps)"
        )


def eviction_warning(alias: str, policy: str) -> str:
    """What to say of locks on ``alias``, whose server evicts keys with ``policy``."""
    return (
        f"Locks on cache alias {alias!r} can be lost: its server evicts keys to make room "
        f"(maxmemory-policy {policy}; the volatile-* policies evict lock keys too, they have "
        "TTLs), so a held lock can vanish and two holders overlap."
    )


EVICTION_HINT = (
    "Set maxmemory-policy noeviction on that server, or put locks on an alias whose server "
    'has it: CACHE_TOOLS["LOCKS"] = "locks".'
)


def _lock_aliases() -> set[str]:
    aliases = {conf.lock_alias()}
    aliases |= {alias or conf.lock_alias() for alias, _, is_lock, _ in _uses if is_lock}
    return {alias for alias in aliases if alias in settings.CACHES}


def check_eviction(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``check --deploy``: asks each server that holds locks for its eviction policy."""
    from .backends import get_backend

    if conf.validate(getattr(settings, "CACHE_TOOLS", {})):
        return []  # E001 says why
    messages: list[CheckMessage] = []
    for alias in sorted(_lock_aliases()):
        try:
            policy = get_backend(alias).eviction_policy()
        except ImproperlyConfigured:
            continue  # E003 says why
        except Exception as exc:
            messages.append(
                Warning(
                    f"Could not ask cache alias {alias!r}, which holds locks, whether its "
                    f"server evicts keys: {exc}",
                    hint=EVICTION_HINT,
                    id="cache_tools.W005",
                )
            )
            continue
        if policy is not None and policy != "noeviction":
            messages.append(
                Warning(eviction_warning(alias, policy), hint=EVICTION_HINT, id="cache_tools.W005")
            )
    return messages


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems = conf.validate(getattr(settings, "CACHE_TOOLS", {}))
    if problems:
        hint = "See the CACHE_TOOLS reference in the docs."
        return [Error(message, hint=hint, id="cache_tools.E001") for message in problems]
    default = conf.default_alias()
    uses = [(default, 'CACHE_TOOLS["CACHE"]', False, False)]
    if conf.get("LOCKS"):
        uses.append((conf.lock_alias(), 'CACHE_TOOLS["LOCKS"]', True, False))
    uses += [
        (alias or (conf.lock_alias() if is_lock else default), user, is_lock, local)
        for alias, user, is_lock, local in _uses
    ]
    messages: list[CheckMessage] = []
    reported: set[tuple[str, str]] = set()
    adapters: dict[str, type[Backend] | None] = {}

    def once(alias: str, check_id: str) -> bool:
        if (alias, check_id) in reported:
            return False
        reported.add((alias, check_id))
        return True

    def adapter_for(alias: str, user: str) -> type[Backend] | None:
        if alias not in adapters:
            try:
                adapters[alias] = adapter_class(alias)
            except ImproperlyConfigured as exc:
                messages.append(Error(f"{user}: {exc}", id="cache_tools.E003"))
                adapters[alias] = None
        return adapters[alias]

    for alias, user, is_lock, local in uses:
        if alias not in settings.CACHES:
            messages.append(
                Error(
                    f"{user} uses cache alias {alias!r}, which is not in CACHES.",
                    hint=f"Use one of {sorted(settings.CACHES)} or add {alias!r} to CACHES.",
                    id="cache_tools.E002",
                )
            )
            continue
        adapter = adapter_for(alias, user)
        if adapter is None:
            continue
        if not adapter.shared and once(alias, "W001"):
            messages.append(
                Warning(
                    f"Cache alias {alias!r} (used by {user}) lives in one process: under uWSGI, "
                    "gunicorn or any multi-process server each worker has its own copy, so "
                    "locks and single flight do not hold across workers.",
                    hint=f"Point {alias!r} at a shared backend (django-redis, memcached).",
                    id="cache_tools.W001",
                )
            )
        if local and not adapter.tracking:
            messages.append(
                Warning(
                    f"{user} keeps local copies (local=...), but cache alias {alias!r} cannot "
                    "tell processes when entries change, so copies could be served stale: "
                    "they are not kept.",
                    hint="Use a Redis alias for local copies, or drop local=.",
                    id="cache_tools.W004",
                )
            )
        if is_lock and not adapter.locks and once(alias, "W003"):
            messages.append(
                Warning(
                    f"{user} locks on cache alias {alias!r}, which stores nothing: the lock "
                    "would never exclude anything (cache_tools refuses it at run time).",
                    hint="Use a shared backend for locks.",
                    id="cache_tools.W003",
                )
            )
    for alias, options in settings.CACHES.items():
        try:
            adapter = adapter_class(alias)
        except ImproperlyConfigured:
            continue  # not used by cache_tools, or reported above
        if adapter.clear_is_global and not options.get("KEY_PREFIX"):
            messages.append(
                Warning(
                    f"Cache alias {alias!r} has no KEY_PREFIX: its cache.clear() and "
                    "clear_cache --flush empty the whole server or database, other "
                    "applications' keys included, and clear_cache cannot tell this alias's "
                    "keys from theirs.",
                    hint=f'Set CACHES[{alias!r}]["KEY_PREFIX"] to a name of this project.',
                    id="cache_tools.W002",
                )
            )
    return messages
