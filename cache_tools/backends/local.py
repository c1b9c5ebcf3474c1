"""Caches whose state is local: ``LocMemCache`` (one process), ``FileBasedCache`` and
``DatabaseCache`` (one host's files, one database), and ``DummyCache`` (nothing at all).

``LocMemCache`` holds within one process only: every uWSGI or gunicorn worker has its own copy,
so locks and single flight do not hold across workers (system check ``cache_tools.W001``).
Conditional deletes are made atomic against other cache_tools calls of the same process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from .base import MISS, EntryKeys, Fetched, LockKeys, ServerKey
from .generic import CacheAPIBackend

__all__ = ["DummyBackend", "FileOrDatabaseBackend", "LocalMemoryBackend"]


class LocalMemoryBackend(CacheAPIBackend):
    shared = False

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._guard = threading.Lock()

    def _delete_if(self, key: ServerKey, expected: str) -> bool:
        with self._guard:
            return super()._delete_if(key, expected)

    def _replace_if(self, key: ServerKey, expected: str, ttl: float) -> bool:
        with self._guard:
            return super()._replace_if(key, expected, ttl)

    def _add_lock(self, keys: LockKeys, token: str, ttl: float) -> bool:
        with self._guard:
            return super()._add_lock(keys, token, ttl)


class FileOrDatabaseBackend(CacheAPIBackend):
    """``FileBasedCache`` and ``DatabaseCache``: shared by the processes that see the same files
    or database. Their ``add`` is a read then a write, so two processes can both take a free
    lock in a narrow race; use Redis or memcached where locks must hold under contention."""


class DummyBackend(CacheAPIBackend):
    """``DummyCache`` stores nothing: cache_aside passes calls through (no single flight, no
    statistics); locks are refused (they would never exclude anything); ``update()`` returns
    ``function(None)``."""

    locks = False
    stores = False
    atomic_update = True  # nothing is stored, so nothing can be lost

    def read(self, keys: EntryKeys) -> Fetched:
        return Fetched(MISS)

    def fetch(
        self, keys: EntryKeys, token: str | None, lock_ttl: float, recompute: bool = False
    ) -> Fetched:
        return Fetched(MISS)

    def store(self, keys: EntryKeys, value: Any, **options: Any) -> bool:
        return False

    def release(
        self, keys: LockKeys, token: str, wake_all: bool = False, uncacheable: float = 0
    ) -> bool:
        return False

    def add_counts(
        self, counts: Mapping[ServerKey, Mapping[str, int]], ttl: float | None = None
    ) -> set[ServerKey]:
        return set()

    def note_names(
        self,
        registry: ServerKey,
        names: Mapping[str, float],
        keep: int,
        max_age: float | None = None,
    ) -> None:
        pass

    def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Any:
        return function(None)
