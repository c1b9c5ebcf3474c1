"""Caches whose state is local: ``LocMemCache`` (one process), ``FileBasedCache`` and
``DatabaseCache`` (one host's files, one database).

``LocMemCache`` holds within one process only: every uWSGI or gunicorn worker has its own copy,
so locks and single flight do not hold across workers (system check ``cache_tools.W001``).
Conditional deletes are made atomic against other cache_tools calls of the same process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .base import EntryKeys, Fetched, LockKeys
from .generic import CacheAPIBackend


class LocalMemoryBackend(CacheAPIBackend):
    shared = False

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._guard = threading.Lock()

    def _delete_if(self, key: str, expected: str) -> bool:
        with self._guard:
            return super()._delete_if(key, expected)

    def _replace_if(self, key: str, expected: str, ttl: float) -> bool:
        with self._guard:
            return super()._replace_if(key, expected, ttl)

    def acquire(self, keys, token, ttl, register_waiter, attempt=0):
        with self._guard:
            return super().acquire(keys, token, ttl, register_waiter, attempt)


class FileOrDatabaseBackend(CacheAPIBackend):
    """``FileBasedCache`` and ``DatabaseCache``: shared by the processes that see the same files
    or database. Their ``add`` is a read then a write, so two processes can both take a free
    lock in a narrow race; use Redis or memcached where locks must hold under contention."""


class DummyBackend(CacheAPIBackend):
    """``DummyCache`` stores nothing: cache_aside passes calls through (no single flight, no
    statistics); locks are refused (they would never exclude anything)."""

    locks = False

    def read(self, keys: EntryKeys) -> Fetched:
        return Fetched(Fetched.MISS)

    def fetch(self, keys: EntryKeys, token: str | None, lock_ttl: float) -> Fetched:
        return Fetched(Fetched.MISS)

    def store(self, keys: EntryKeys, value: Any, **options: Any) -> bool:
        return False

    def release(self, keys: LockKeys, token: str, wake_all: bool = False) -> bool:
        return False

    def add_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        pass
