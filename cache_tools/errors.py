"""Exceptions raised by ``cache_tools``.

Outages and refusals are different things: :class:`BackendUnavailable` means the server could
not be reached or did not answer in time (try again later); :class:`StoreRefused` means it
answered and would not keep a value (too big, full, unserialisable), which retrying does not
mend. When the connection broke after a write was sent, the server may have applied it or not:
:class:`OutcomeUnknown` says so, as database drivers do for a commit whose reply was lost.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "CacheToolsError",
    "LockError",
    "LockLost",
    "LockTimeout",
    "LockUnavailable",
    "OutcomeUnknown",
    "StoreRefused",
    "UnserializableValue",
    "UpdateConflict",
]


class CacheToolsError(Exception):
    """Base class of every exception ``cache_tools`` raises on purpose."""


class BackendUnavailable(CacheToolsError):
    """The cache server could not be reached or did not answer in time.

    ``outcome_unknown`` is True when a request may have reached the server before the
    connection failed (a timeout while waiting for the reply): a write may then have been
    applied although the caller got this error.
    """

    outcome_unknown = False


class OutcomeUnknown(BackendUnavailable):
    """The reply to a write was lost: the server may or may not have applied it.

    >>> try:
    ...     update("counter", lambda n: (n or 0) + 1)
    ... except OutcomeUnknown:
    ...     ...  # read the value back before deciding to retry
    """

    outcome_unknown = True


class StoreRefused(CacheToolsError):
    """The server answered but would not store a value (too big, cache full, out of memory).

    cache_aside returns the computed result uncached and counts an error; it is not an outage.
    """


class UnserializableValue(StoreRefused):
    """A result could not be serialised for the cache; it was returned but not stored."""


class LockError(CacheToolsError):
    """A lock could not be taken or kept; the guarded code did not run, or ran unprotected."""


class LockUnavailable(LockError):
    """The cache server could not be reached (or refused) to take, keep or read the lock.

    ``outcome_unknown`` is True when the server may have acquired the lock after all; the
    library then releases that acquisition itself as soon as the server answers again.
    """

    outcome_unknown = False


class LockTimeout(LockError):
    """``blocking_timeout`` ran out before the lock became free."""


class LockLost(LockError):
    """The lock expired or was taken by another owner while the guarded code ran."""


class UpdateConflict(CacheToolsError):
    """``update()`` could not finish within its budget: other writers kept winning the race,
    or another holder kept the key's update lock."""
