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
``cache_tools.W006``
    Two aliases on one server have key prefixes one of which starts the other
    (``app1:1:`` and ``app1:1:1:``): ``clear_cache`` of the first deletes the second's keys.

The checks ask each alias's adapter for its capabilities; they never compare ``BACKEND``
strings.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

from django.conf import settings
from django.core.cache import caches
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
    """Every check that needs no connection, each problem reported once: the setting itself
    (E001), each alias in use (E002, E003, W001, W003, W004), each alias's keys (W002, W006)."""
    problems = conf.validate(getattr(settings, "CACHE_TOOLS", {}))
    hint = "See the CACHE_TOOLS reference in the docs."
    messages: list[CheckMessage] = [
        Error(message, hint=hint, id="cache_tools.E001") for message in problems
    ]
    if problems:  # adapters and default aliases depend on the setting: only what does not
        unknown = [_unknown_alias(alias, user) for alias, user, *_ in _uses if alias]
        return messages + [error for error in unknown if error is not None]
    messages += _check_uses(_uses_to_check())
    messages += _check_key_prefixes()
    messages += _check_prefix_overlaps()
    return messages


def _uses_to_check() -> list[tuple[str, str, bool, bool]]:
    """(alias, user, is_lock, local) of every use: the setting's aliases and the decorators'."""
    default = conf.default_alias()
    uses = [(default, 'CACHE_TOOLS["CACHE"]', False, False)]
    if conf.get("LOCKS"):
        uses.append((conf.lock_alias(), 'CACHE_TOOLS["LOCKS"]', True, False))
    return uses + [
        (alias or (conf.lock_alias() if is_lock else default), user, is_lock, local)
        for alias, user, is_lock, local in _uses
    ]


def _check_uses(uses: list[tuple[str, str, bool, bool]]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    adapters: dict[str, type[Backend] | None] = {}
    reported: set[tuple[str, str]] = set()
    for alias, user, is_lock, local in uses:
        unknown = _unknown_alias(alias, user)
        if unknown is not None:
            messages.append(unknown)
            continue
        if alias not in adapters:
            try:
                adapters[alias] = adapter_class(alias)
            except ImproperlyConfigured as exc:
                messages.append(Error(f"{user}: {exc}", id="cache_tools.E003"))
                adapters[alias] = None
        adapter = adapters[alias]
        if adapter is not None:
            for message in _capability_warnings(alias, user, adapter, is_lock, local):
                if (alias, message.id or "") not in reported or message.id == "cache_tools.W004":
                    reported.add((alias, message.id or ""))
                    messages.append(message)
    return messages


def _unknown_alias(alias: str, user: str) -> CheckMessage | None:
    """E002, when ``alias`` is not in CACHES."""
    if alias in settings.CACHES:
        return None
    return Error(
        f"{user} uses cache alias {alias!r}, which is not in CACHES.",
        hint=f"Use one of {sorted(settings.CACHES)} or add {alias!r} to CACHES.",
        id="cache_tools.E002",
    )


def _capability_warnings(
    alias: str, user: str, adapter: type[Backend], is_lock: bool, local: bool
) -> list[CheckMessage]:
    """What ``user`` cannot have from ``alias``'s backend (W001 and W003 once per alias)."""
    messages: list[CheckMessage] = []
    if not adapter.shared:
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
    if is_lock and not adapter.locks:
        messages.append(
            Warning(
                f"{user} locks on cache alias {alias!r}, which stores nothing: the lock "
                "would never exclude anything (cache_tools refuses it at run time).",
                hint="Use a shared backend for locks.",
                id="cache_tools.W003",
            )
        )
    return messages


def _adapters_of_caches() -> dict[str, type[Backend]]:
    """The adapter of every alias in CACHES that has one."""
    found = {}
    for alias in settings.CACHES:
        try:
            found[alias] = adapter_class(alias)
        except ImproperlyConfigured:
            continue  # not used by cache_tools, or reported as E003
    return found


def _check_key_prefixes() -> list[CheckMessage]:
    """W002: an alias whose ``cache.clear()`` empties a shared server has no KEY_PREFIX."""
    return [
        Warning(
            f"Cache alias {alias!r} has no KEY_PREFIX: its cache.clear() and "
            "clear_cache --flush empty the whole server or database, other "
            "applications' keys included, and clear_cache cannot tell this alias's "
            "keys from theirs.",
            hint=f'Set CACHES[{alias!r}]["KEY_PREFIX"] to a name of this project.',
            id="cache_tools.W002",
        )
        for alias, adapter in _adapters_of_caches().items()
        if adapter.clear_is_global and not settings.CACHES[alias].get("KEY_PREFIX")
    ]


def _locations(alias: str) -> set[str]:
    location = settings.CACHES[alias].get("LOCATION") or ""
    return {location} if isinstance(location, str) else {str(part) for part in location}


def _check_prefix_overlaps() -> list[CheckMessage]:
    """W006: two aliases on one server whose keys one pattern matches: ``clear_cache`` of the
    one with the shorter prefix deletes the other's keys too (``app1:1:`` and ``app1:1:1:``)."""
    listing = [a for a, adapter in _adapters_of_caches().items() if adapter.can_list_keys]
    marker = "\x00cache-tools-marker\x00"
    prefixes = {a: caches[a].make_key(marker).partition(marker)[0] for a in listing}
    messages: list[CheckMessage] = []
    for shorter, longer in itertools.permutations(listing, 2):
        if not _locations(shorter) & _locations(longer):
            continue
        if prefixes[longer] != prefixes[shorter] and prefixes[longer].startswith(prefixes[shorter]):
            messages.append(
                Warning(
                    f"Cache aliases {shorter!r} and {longer!r} share a server, and every key "
                    f"of {longer!r} ({prefixes[longer]!r}...) starts with {shorter!r}'s prefix "
                    f"({prefixes[shorter]!r}): clear_cache --cache {shorter} deletes "
                    f"{longer!r}'s keys too.",
                    hint="Give each alias a KEY_PREFIX that is not the start of another's.",
                    id="cache_tools.W006",
                )
            )
    return messages
