"""The figures behind the dashboard, its JSON endpoint, ``manage.py cache_stats`` and the
Prometheus collector: every cached function and view, every lock and every tag invalidated, over
all processes.

What is listed comes from the cache servers' registries (each process notes the functions and
locks it uses, see :mod:`cache_tools.stats`), joined with what this process defines, so a
function shows even when only other processes (or hosts) call it. Counts come from the server,
plus this process's unsent ones. A server that cannot be read raises ``BackendUnavailable``:
zeros would look like figures.

>>> from cache_tools import monitor
>>> report = monitor.snapshot()
>>> sorted(report)
['functions', 'generated_at', 'locks', 'tags']
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import stats
from .aside import cached_functions
from .backends import get_backend
from .backends.base import Backend, LockState
from .keys import safe_key
from .views import cached_views

__all__ = [
    "FunctionFigures",
    "LockFigures",
    "TagFigures",
    "functions",
    "locks",
    "snapshot",
    "tags",
    "totals_per_minute",
]


@dataclass
class FunctionFigures:
    """One cached function or view: its counts over every process and, with ``series``,
    its counts per minute for the last hour (oldest first)."""

    function: str
    alias: str
    kind: str  # "function", "view", "fragment" ({% cache %}), or "unknown" (defined elsewhere)
    info: stats.CacheInfo
    series: list[tuple[int, stats.CacheInfo]] = field(default_factory=list)

    @property
    def calls(self) -> int:
        info = self.info
        return info.hits + info.misses + info.stale_hits + info.local_hits

    @property
    def hit_ratio(self) -> float | None:
        """Calls answered without computing, of all calls (None before the first call)."""
        calls = self.calls
        return None if not calls else (calls - self.info.misses) / calls

    def as_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "alias": self.alias,
            "kind": self.kind,
            **self.info._asdict(),
            "hit_ratio": self.hit_ratio,
            "per_minute": [
                {"minute": minute * 60, **counts._asdict()} for minute, counts in self.series
            ],
        }


@dataclass
class LockFigures:
    """One lock: its state now (held, age in seconds, fence, waiters) and its counts."""

    name: str
    alias: str
    state: LockState
    info: stats.LockInfo

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            **self.state._asdict(),
            **self.info._asdict(),
        }


@dataclass
class TagFigures:
    """One tag: how many times it was invalidated, over every process."""

    name: str
    alias: str
    invalidated: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "alias": self.alias, "invalidated": self.invalidated}


def _aliases() -> list[tuple[str, Backend]]:
    """The aliases whose backends store and are shared (where counts and registries live)."""
    found = []
    for alias in settings.CACHES:
        try:
            backend = get_backend(alias)
        except ImproperlyConfigured:
            continue  # an unsupported backend: nothing of ours is there
        if backend.stores:
            found.append((alias, backend))
    return found


def functions(
    series: bool = False, limit: int | None = None, offset: int = 0
) -> list[FunctionFigures]:
    """Every cached function and view, the most called first (then by alias and dotted
    path); with ``limit``, that many from ``offset`` on (the counts of all are read, in one
    round trip per alias; ``series``, per page)."""
    found: dict[tuple[str, str], str] = {}
    aliases = _aliases()
    for alias, backend in aliases:
        for function_id in backend.read_names(backend.registry_key("functions")):
            kind = "fragment" if function_id.startswith("template.cache.") else "unknown"
            found[(alias, function_id)] = kind
    shared = {alias for alias, _ in aliases}
    for kind, defined in (("function", cached_functions()), ("view", cached_views())):
        for cached in defined:
            try:
                alias = cached.flight.backend.alias
            except ImproperlyConfigured:
                continue  # its alias is not configured (any more): nothing to show
            if alias in shared:
                found[(alias, cached.flight.function_id)] = kind
    rows = []
    for alias in sorted({alias for alias, _ in found}):
        backend = get_backend(alias)
        ids = sorted(function_id for a, function_id in found if a == alias)
        counts = stats.read_many(alias, [backend.stats_key(function_id) for function_id in ids])
        rows += [
            FunctionFigures(function_id, alias, found[(alias, function_id)], info)
            for function_id, info in zip(ids, counts, strict=True)
        ]
    rows.sort(key=lambda row: -row.calls)  # stable: by alias and path among equals
    if limit is not None:
        rows = rows[offset : offset + limit]
    if series:
        for row in rows:
            row.series = stats.read_series(
                row.alias, get_backend(row.alias).stats_key(row.function)
            )
    return rows


def totals_per_minute() -> list[tuple[int, stats.CacheInfo]]:
    """Every function's counts summed, each minute of the last hour (oldest first)."""
    summed: dict[int, Counter[str]] = {}
    for alias, backend in _aliases():
        for minute, info in stats.read_series(alias, backend.stats_key(stats.ALL_FUNCTIONS)):
            summed.setdefault(minute, Counter()).update(info._asdict())
    return [
        (minute, stats.CacheInfo(*(counts[field] for field in stats.FIELDS)))
        for minute, counts in sorted(summed.items())
    ]


def locks(limit: int | None = None) -> list[LockFigures]:
    """The locks the servers keep counts for (the ``stats.LOCK_NAMES_KEPT`` most recently
    used per alias), held ones first, then by alias and name; at most ``limit``."""
    rows = []
    for alias, backend in _aliases():
        if not backend.locks:
            continue
        counted = stats.read_locks(alias)
        names = sorted(counted)
        states = backend.lock_states([backend.lock_keys(safe_key(name)) for name in names])
        rows += [
            LockFigures(name, alias, state, counted[name])
            for name, state in zip(names, states, strict=True)
        ]
    rows.sort(key=lambda row: (not row.state.held, row.alias, row.name))
    return rows if limit is None else rows[:limit]


def tags(limit: int | None = None) -> list[TagFigures]:
    """The tags the servers keep invalidation counts for (the ``stats.TAG_NAMES_KEPT`` most
    recently invalidated per alias), the most invalidated first; at most ``limit``."""
    rows = [
        TagFigures(name, alias, count)
        for alias, _ in _aliases()
        for name, count in stats.read_tags(alias).items()
    ]
    rows.sort(key=lambda row: (-row.invalidated, row.alias, row.name))
    return rows if limit is None else rows[:limit]


def snapshot(series: bool = True, limit: int | None = None, offset: int = 0) -> dict[str, Any]:
    """Everything, as JSON-ready data (the dashboard's JSON endpoint and ``--json``); with
    ``limit``, that many functions from ``offset`` on, and that many locks and tags."""
    return {
        "functions": [row.as_dict() for row in functions(series, limit, offset)],
        "locks": [row.as_dict() for row in locks(limit)],
        "tags": [row.as_dict() for row in tags(limit)],
        "generated_at": time.time(),
    }
