"""Cross-process caching and locking for Django.

>>> from cache_tools import cache_aside, cache_view, lock, lock_decorator, update
"""

from .aside import CacheInfo, Call, cache_aside
from .errors import (
    CacheToolsError,
    LockError,
    LockLost,
    LockTimeout,
    LockUnavailable,
    UpdateConflict,
)
from .locks import Lock, current_lock, lock, lock_decorator
from .update import update
from .views import cache_view

__all__ = [
    "CacheInfo",
    "CacheToolsError",
    "Call",
    "Lock",
    "LockError",
    "LockLost",
    "LockTimeout",
    "LockUnavailable",
    "UpdateConflict",
    "cache_aside",
    "cache_view",
    "current_lock",
    "lock",
    "lock_decorator",
    "update",
]
