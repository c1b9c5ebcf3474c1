"""A Redis-protocol client library's errors, as cache_tools's: an outage
(:class:`~cache_tools.errors.BackendUnavailable`), a request whose outcome is unknown
(:class:`~cache_tools.errors.OutcomeUnknown`), a refused write
(:class:`~cache_tools.errors.StoreRefused`). redis-py and valkey-py have the same hierarchy under
different names; :class:`ClientErrors` holds one library's classes.

>>> with translated("default", REDIS_ERRORS):
...     client.info("memory")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import NamedTuple, NoReturn

import redis.exceptions

from ..errors import BackendUnavailable, OutcomeUnknown, StoreRefused

__all__ = [
    "CONFLICT",
    "REDIS_ERRORS",
    "ClientErrors",
    "raise_translated",
    "translated",
    "translation",
]


class ClientErrors(NamedTuple):
    """The exception classes of one Redis-protocol client library: redis-py and valkey-py
    have the same hierarchy under different names, and the adapter catches the ones of the
    library its client comes from."""

    base: tuple[type[Exception], ...]
    #: The cluster client's own failures (no reachable node, keys in several slots).
    cluster: type[Exception]
    connection: tuple[type[Exception], ...]
    busy: type[Exception]
    response: type[Exception]
    out_of_memory: type[Exception]
    read_only: type[Exception]
    watch: type[Exception]
    no_script: type[Exception]
    #: A cluster that refuses a request while it moves or promotes (nothing was applied).
    cluster_down: tuple[type[Exception], ...]

    @classmethod
    def of(cls, exceptions: ModuleType) -> ClientErrors:
        """From a library's ``exceptions`` module (``redis.exceptions``, ``valkey.exceptions``)."""
        cluster_base = next(
            getattr(exceptions, name)
            for name in ("RedisClusterException", "ValkeyClusterException")
            if hasattr(exceptions, name)
        )
        base = next(
            getattr(exceptions, name)
            for name in ("RedisError", "ValkeyError")
            if hasattr(exceptions, name)
        )
        return cls(
            base=(base, cluster_base),
            cluster=cluster_base,
            connection=(exceptions.ConnectionError, exceptions.TimeoutError),
            busy=exceptions.BusyLoadingError,
            response=exceptions.ResponseError,
            out_of_memory=exceptions.OutOfMemoryError,
            read_only=exceptions.ReadOnlyError,
            watch=exceptions.WatchError,
            no_script=exceptions.NoScriptError,
            cluster_down=(
                exceptions.ClusterDownError,
                exceptions.TryAgainError,
                exceptions.SlotNotCoveredError,
            ),
        )


REDIS_ERRORS = ClientErrors.of(redis.exceptions)

#: redis-py raises WatchError both for a real conflict and for a connection lost while
#: watching; only this message means another writer changed the key.
CONFLICT = "Watched variable changed"


def _sent_before_failing(exc: Exception) -> bool:
    """False when the connection failed before the request left (nothing was applied): as the
    wire marks it (``sent``), else as the client says (a failed connect, an exhausted pool)."""
    sent = getattr(exc, "sent", None)
    if sent is not None:
        return bool(sent)
    message = str(exc).lower()
    return "connecting to" not in message and "too many connections" not in message


def translation(alias: str, exc: Exception, errors: ClientErrors) -> Exception | None:
    """cache_tools's error for a client library's error (None when it is not ours to
    translate: a bug, a script error)."""
    if isinstance(exc, errors.busy):  # refused while loading its data: nothing applied
        return BackendUnavailable(f"cache {alias!r} is starting: {exc}")
    if isinstance(exc, errors.cluster_down):  # refused mid-failover: nothing applied
        return BackendUnavailable(f"cache {alias!r} is failing over: {exc}")
    if isinstance(exc, errors.cluster) and "cannot be connected" in str(exc):
        return BackendUnavailable(f"cache {alias!r}: no node of the cluster answers: {exc}")
    if isinstance(exc, errors.connection):
        if _sent_before_failing(exc):
            return OutcomeUnknown(
                f"cache {alias!r} did not answer; the request may or may not have been "
                f"applied: {exc}"
            )
        return BackendUnavailable(f"cache {alias!r} is unreachable: {exc}")
    if isinstance(exc, errors.response):
        message = str(exc)
        if isinstance(exc, errors.out_of_memory) or "OOM command not allowed" in message:
            return StoreRefused(f"cache {alias!r} refused the write (maxmemory): {exc}")
        if "MISCONF" in message:
            return StoreRefused(f"cache {alias!r} refuses writes: {exc}")
        if isinstance(exc, errors.read_only) or "READONLY" in message:  # a replica, mid-failover
            return BackendUnavailable(f"cache {alias!r} is read-only now: {exc}")
    return None


def raise_translated(alias: str, exc: Exception, errors: ClientErrors) -> NoReturn:
    """Raise cache_tools's error for ``exc`` (caught from the client library), or ``exc``."""
    error = translation(alias, exc, errors)
    if error is None:
        raise exc
    raise error from exc


@contextlib.contextmanager
def translated(alias: str, errors: ClientErrors) -> Iterator[None]:
    """The client library's errors raised inside, as cache_tools's."""
    try:
        yield
    except errors.base as exc:
        raise_translated(alias, exc, errors)
