"""The figures behind the dashboard, its JSON endpoint, ``manage.py cache_stats`` and the
Prometheus collector: every cached function and view, and every lock, over all processes.

What is listed comes from the cache servers' registries (each process notes the functions and
locks it uses, see :mod:`cache_tools.stats`), joined with what this process defines, so a
function shows even when only other processes (or hosts) call it. Counts come from the server,
plus this process's unsent ones. A server that cannot be read raises ``BackendUnavailable``:
zeros would look like figures.

>>> from cache_tools import monitor
>>> report = monitor.snapshot()
>>> sorted(report)
['functions', 'locks', 'generated_at']
"""

from __future__ import annotations

import time
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

__all__ = ["FunctionFigures", "LockFigures", "functions", "locks", "snapshot"]


@dataclass
class FunctionFigures:
    """One cached function or view: its counts over every process and, with ``series``,
    its counts per minute for the last hour (oldest first)."""

    function: str
    alias: str
    kind: str  # "function", "view", or "unknown" (only other processes define it)
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


def _registered(backend: Backend, kind: str) -> list[str]:
    return sorted(backend.read_names(backend.registry_key(kind)))


def functions(series: bool = False) -> list[FunctionFigures]:
    """Every cached function and view, by alias then dotted path."""
    aliases = _aliases()
    found: dict[tuple[str, str], str] = {}
    for alias, backend in aliases:
        for function_id in _registered(backend, "functions"):
            found[(alias, function_id)] = "unknown"
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
    for (alias, function_id), kind in sorted(found.items()):
        stats_key = get_backend(alias).stats_key(function_id)
        info = stats.read(alias, stats_key)
        minutes = stats.read_series(alias, stats_key) if series else []
        rows.append(FunctionFigures(function_id, alias, kind, info, minutes))
    return rows


def locks() -> list[LockFigures]:
    """Every lock processes noted in the last registry window, held ones first."""
    rows = []
    for alias, backend in _aliases():
        if not backend.locks:
            continue
        for name in _registered(backend, "locks"):
            state = backend.lock_state(backend.lock_keys(safe_key(name)))
            rows.append(LockFigures(name, alias, state, stats.read_lock(alias, name)))
    return sorted(rows, key=lambda row: (not row.state.held, row.alias, row.name))


def snapshot(series: bool = True) -> dict[str, Any]:
    """Everything, as JSON-ready data (the dashboard's JSON endpoint and ``--json``)."""
    return {
        "functions": [row.as_dict() for row in functions(series=series)],
        "locks": [row.as_dict() for row in locks()],
        "generated_at": time.time(),
    }
