"""Cross-process caching and locking for Django (distribution ``django-cache-flight``).

>>> from cache_tools import cache_aside, cache_view, invalidate_tags, lock, lock_decorator
"""

from importlib.metadata import PackageNotFoundError, version

from .aside import cache_aside
from .dependencies import invalidate_model
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
from .fragments import invalidate_fragment
from .locked import lock_decorator
from .locks import Lock, current_lock, lock
from .stats import CacheInfo
from .tags import ainvalidate_tags, invalidate_tags
from .update import aupdate, update
from .views import cache_view
from .warmup import Call

try:
    __version__ = version("django-cache-flight")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

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
    "__version__",
    "ainvalidate_tags",
    "aupdate",
    "cache_aside",
    "cache_view",
    "current_lock",
    "invalidate_fragment",
    "invalidate_model",
    "invalidate_tags",
    "lock",
    "lock_decorator",
    "update",
]
