"""Exceptions raised by ``cache_tools``."""

from __future__ import annotations


class CacheToolsError(Exception):
    """Base class of every exception ``cache_tools`` raises on purpose."""


class BackendUnavailable(CacheToolsError):
    """The cache server could not be reached or did not answer in time."""


class UnserializableValue(CacheToolsError):
    """A result could not be serialised for the cache; it was returned but not stored."""


class LockError(CacheToolsError):
    """A lock could not be taken or kept; the guarded code did not run, or ran unprotected."""


class LockUnavailable(LockError):
    """The cache server could not be reached to take or keep the lock."""


class LockTimeout(LockError):
    """``blocking_timeout`` ran out before the lock became free."""


class LockLost(LockError):
    """The lock expired or was taken by another owner while the guarded code ran."""


class UpdateConflict(CacheToolsError):
    """``update()`` kept losing races with other writers and gave up after its retries."""
