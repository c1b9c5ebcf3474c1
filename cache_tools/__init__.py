"""Cross-process caching and locking for Django.

>>> from cache_tools import cache_aside, cache_view, lock, lock_decorator, update
"""

from .aside import cache_aside
from .errors import (
    BackendUnavailable,
    CacheToolsError,
    LockError,
    LockLost,
    LockTimeout,
    LockUnavailable,
    OutcomeUnknown,
    StoreRefused,
    UnserializableValue,
    UpdateConflict,
)
from .locks import Lock, current_lock, lock, lock_decorator
from .stats import CacheInfo
from .update import update
from .views import cache_view
from .warmup import Call

__all__ = [
    "BackendUnavailable",
    "CacheInfo",
    "CacheToolsError",
    "Call",
    "Lock",
    "LockError",
    "LockLost",
    "LockTimeout",
    "LockUnavailable",
    "OutcomeUnknown",
    "StoreRefused",
    "UnserializableValue",
    "UpdateConflict",
    "cache_aside",
    "cache_view",
    "current_lock",
    "lock",
    "lock_decorator",
    "update",
]
