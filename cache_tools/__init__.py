"""Cross-process caching and locking for Django.

Public names: :func:`lock`, :func:`lock_decorator`, :func:`current_lock`, the exceptions, and
(from later modules) :func:`cache_aside`, :func:`cache_view`, :func:`update`.
"""

from .errors import CacheToolsError, LockError, LockLost, LockTimeout, UpdateConflict
from .locks import Lock, current_lock, lock, lock_decorator

__all__ = [
    "CacheToolsError",
    "Lock",
    "LockError",
    "LockLost",
    "LockTimeout",
    "UpdateConflict",
    "current_lock",
    "lock",
    "lock_decorator",
]
