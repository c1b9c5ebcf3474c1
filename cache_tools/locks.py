"""A lock that holds across threads, processes and hosts, on the cache server.

.. code-block:: python

    from cache_tools import lock, lock_decorator

    @lock_decorator(timeout=30)
    def fetch_remote_thing(name): ...          # one call per name at a time, everywhere

    with lock("reports:monthly", timeout=30, blocking_timeout=5) as handle:
        write_report(fence=handle.fence)

Waiters block on the release signal instead of polling; a holder that dies is replaced once its
TTL runs out; with ``auto_renew`` a watchdog (:mod:`.lock_watchdog`) keeps a long call's lock
alive and reports a lost one; ``handle.fence`` increases strictly with every acquisition of a
key. This module holds the lock's steps; :mod:`.locked` the decorator.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
import warnings
from typing import Any, NoReturn

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from . import checks, conf, recording, stats, tracing, transactions
from ._options import positive_seconds, seconds_or_zero
from ._process import PerProcess
from .backends import get_backend
from .backends.base import Backend, LockKeys
from .drive import Steps, adrive, ask, drive
from .errors import (
    BackendUnavailable,
    LockError,
    LockLost,
    LockTimeout,
    LockUnavailable,
    StoreRefused,
)
from .keys import safe_key
from .lock_record import held_here, new_token, note_released, note_taken, owner_now
from .lock_watchdog import watchdog
from .orphans import release_when_answering

__all__ = ["DEFAULT", "Lock", "current_lock", "lock"]

logger = logging.getLogger("cache_tools.lock")


def current_lock() -> Lock | None:
    """The innermost lock held by the running thread or task, or None.

    >>> @lock_decorator
    ... def write(row):
    ...     save(row, fence=current_lock().fence)
    """
    held = _held_here()
    return held[-1] if held else None


def _held_here(pid: int | None = None) -> list[Lock]:
    return [handle for handle in held_here(pid) if isinstance(handle, Lock)]


class Default(enum.Enum):
    """The type of :data:`DEFAULT`."""

    DEFAULT = "the handle's own"


#: ``acquire()``'s default wait: the handle's ``blocking_timeout``.
DEFAULT = Default.DEFAULT


def validate_transaction_options(until_commit: Any, using: Any) -> None:
    if until_commit not in (None, True, False):
        raise ValueError(f"until_commit must be None, True or False, not {until_commit!r}")
    if using is not None and using not in connections:
        raise ValueError(f"using must name a database in DATABASES, not {using!r}")


def validate_blocking_timeout(blocking_timeout: Any) -> float | None:
    if blocking_timeout is None:
        return None
    return seconds_or_zero(blocking_timeout, "blocking_timeout")


def _unavailable(message: str, exc: BackendUnavailable | StoreRefused) -> NoReturn:
    """Raise ``LockUnavailable`` for a failed server request (its outcome unknown where the
    request's was), chained to the client library's error where there is one."""
    error = LockUnavailable(f"{message}: {exc}")
    error.outcome_unknown = getattr(exc, "outcome_unknown", False)
    raise error from exc.__cause__ or exc


class _Evictions:
    """Asks each alias's server once per process, in the background, whether it can evict
    the keys of locks, and logs a warning if it can (``check --deploy`` says it too)."""

    def __init__(self) -> None:
        self._asked: set[str] = set()
        self._guard = threading.Lock()

    def note(self, backend: Backend) -> None:
        if backend.alias in self._asked:
            return
        with self._guard:
            if backend.alias in self._asked:
                return
            self._asked.add(backend.alias)
        threading.Thread(
            target=self._ask, args=(backend,), name="cache-tools-eviction-check", daemon=True
        ).start()

    @staticmethod
    def _ask(backend: Backend) -> None:
        try:
            policy = backend.eviction_policy()
        except Exception as exc:  # an outage, a refused INFO: the locks say so themselves
            logger.debug("could not read the eviction policy of %r: %s", backend.alias, exc)
            return
        if policy is not None and policy != "noeviction":
            logger.warning(
                "%s %s", checks.eviction_warning(backend.alias, policy), checks.EVICTION_HINT
            )


_evictions = PerProcess(_Evictions)


class Lock:
    """A named lock on a cache alias; use :func:`lock` or :func:`lock_decorator` to make one.

    Attributes: ``name`` (as given), ``key`` (the lock's key as the cache server stores it),
    ``fence`` (set while held), ``lost`` (True once the lock was found taken or gone).

    The handle's idea of being held is a cache of the server's: before it refuses a second
    acquisition as re-entry, it asks the server whether its token still holds the lock.
    """

    __slots__ = (
        "__weakref__",
        "_acquired_at",
        "_backend",
        "_ending",
        "_owner",
        "_pid",
        "_token",
        "alias",
        "auto_renew",
        "blocking_timeout",
        "fence",
        "key",
        "keys",
        "lost",
        "name",
        "timeout",
        "until_commit",
        "using",
    )

    def __init__(
        self,
        name: str,
        *,
        timeout: float = 30,
        blocking_timeout: float | None = None,
        cache: str | None = None,
        auto_renew: bool = True,
        until_commit: bool | None = None,
        using: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"lock name must be a non-empty string, not {name!r}")
        self.timeout = positive_seconds(timeout, "timeout")
        self.blocking_timeout = validate_blocking_timeout(blocking_timeout)
        validate_transaction_options(until_commit, using)
        self.until_commit, self.using = until_commit, using
        self._ending: transactions.TransactionEnd | None = None
        self.name = name
        self._backend = get_backend(cache or conf.lock_alias())
        _evictions.get().note(self._backend)
        self.alias = self._backend.alias
        if not self._backend.locks:
            raise ImproperlyConfigured(
                f"cache alias {self.alias!r} ({type(self._backend.cache).__name__}) cannot hold "
                "locks: it stores nothing, so a lock would never exclude anything"
            )
        #: The lock's keys on the server (its own and its companions').
        self.keys: LockKeys = self._backend.lock_keys(safe_key(name))
        self.key: str = self.keys.lock
        self.auto_renew = auto_renew
        self.fence: int | None = None
        self.lost = False
        self._token: str | None = None
        self._pid = 0
        self._owner: object = None
        self._acquired_at = 0.0

    def __repr__(self) -> str:
        state = "held" if self._token else "free"
        return f"<Lock {self.key!r} {state} fence={self.fence}>"

    def __del__(self) -> None:
        if getattr(self, "_token", None) is not None and self._pid == os.getpid():
            warnings.warn(
                f"lock {self.key!r} was garbage-collected while held; it is no longer renewed "
                "and expires with its TTL (release it, or use `with lock(...)`)",
                ResourceWarning,
                stacklevel=2,
            )
            self._token = None  # never renewed again, should the watchdog still reach it

    @property
    def held(self) -> bool:
        """Whether this handle holds the lock (as far as this process knows), until its
        transaction ends if its release waits for that (``until_commit``)."""
        return self._token is not None

    @property
    def held_for(self) -> float | None:
        """Seconds since this handle took the lock (None when not held)."""
        return time.monotonic() - self._acquired_at if self._token is not None else None

    def _still_held(self) -> Steps[bool]:
        """Whether the server says this handle's token holds the lock; forgets it if not."""
        token = self._token
        if token is None:
            return False
        try:
            owner = yield from ask(Backend.owner, self.keys)
        except (BackendUnavailable, StoreRefused) as exc:
            _unavailable(f"cannot read lock {self.key!r}", exc)
        if owner == token:
            return True
        logger.warning(
            "lock %s expired or was taken over while held (fence %s)", self.key, self.fence
        )
        self._mark_lost()
        self._forget()
        return False

    def _mark_lost(self) -> None:
        counted, self.lost = self.lost, True
        if not counted:
            stats.lock_event(self._backend, self.name, lost=True)

    def _forget(self) -> None:
        self._token = None
        note_released(self)

    def acquire(self, blocking_timeout: float | Default | None = DEFAULT) -> bool:
        """Wait up to ``blocking_timeout`` seconds (default: the handle's own, as for ``with``;
        None: forever, 0: try once); True if taken.

        Raises ``LockError`` if this thread or task still holds the lock (the server is asked),
        and ``LockUnavailable`` if the cache server cannot be reached.

        >>> handle = lock("reports:monthly", blocking_timeout=5)
        >>> handle.acquire()       # waits at most 5 s, like `with handle:`
        >>> handle.acquire(None)   # waits for as long as it takes
        """
        return drive(self._acquire(blocking_timeout), self._backend)

    async def aacquire(self, blocking_timeout: float | Default | None = DEFAULT) -> bool:
        """:meth:`acquire` for async code: waits without blocking the event loop."""
        return await adrive(self._acquire(blocking_timeout), self._backend.asynchronous())

    def _acquire(self, wait_for: float | Default | None) -> Steps[bool]:
        blocking_timeout = (
            self.blocking_timeout if wait_for is DEFAULT else validate_blocking_timeout(wait_for)
        )
        pid = os.getpid()
        if self._pid != pid:
            self._token = None  # taken by the process this one was forked from
        if self.until_commit and not transactions.in_transaction(self.using):
            raise LockError(
                f"lock {self.key!r} is to be held until COMMIT (until_commit=True), but database "
                f"{self.using or 'default'!r} is in no transaction: wrap it in atomic()"
            )
        if (yield from self._held_already(pid)):
            return True
        token, started = new_token(), time.monotonic()
        try:
            taken = yield from self._take(token, blocking_timeout, started)
        except (BackendUnavailable, StoreRefused) as exc:
            _unavailable(f"cannot take lock {self.key!r}", exc)
        if taken is None:
            logger.debug("gave up on %s after %.3fs", self.key, time.monotonic() - started)
            return False
        fence, waited = taken
        self._token, self.fence, self.lost = token, fence, False
        self._pid, self._owner = pid, owner_now()
        self._acquired_at = time.monotonic()
        stats.lock_event(
            self._backend, self.name, waited=self._acquired_at - started if waited else None
        )
        ref = note_taken(self)
        logger.debug(
            "took %s (fence %s) after %.3fs", self.key, self.fence, self._acquired_at - started
        )
        if self.auto_renew:
            watchdog.get().watch(self, ref)
        return True

    def _held_already(self, pid: int) -> Steps[bool]:
        """True when this thread's transaction already holds the lock (taken over); raises
        ``LockError`` when this handle, or this thread or task, holds it (the server says)."""
        if self._token is not None and self._reclaim(self):
            return True
        if self._token is not None and (yield from self._still_held()):
            raise LockError(f"lock {self.key!r} is already held by this handle")
        owner = owner_now()
        for other in _held_here(pid):
            same = other.alias == self.alias and other.key == self.key and other._owner == owner
            if same and self._reclaim(other):
                return True
            if same and (yield from other._still_held()):
                raise LockError(
                    f"lock {self.key!r} is already held by this thread or task; "
                    "re-entering it would wait for itself"
                )
        return False

    def _take(
        self, token: str, blocking_timeout: float | None, started: float
    ) -> Steps[tuple[int, bool] | None]:
        """Try, and wait for a release signal between tries, until taken (its fence, and
        whether it had to wait) or ``blocking_timeout`` ran out (None)."""
        waiting: list[Any] = []  # (when, the span) of the wait, once this caller waits
        try:
            taken = yield from self._tries(token, blocking_timeout, started, waiting)
        except BaseException as exc:
            tracing.end_wait(waiting[0][1] if waiting else None, None, exc)
            raise
        if waiting:
            fence = taken[0] if taken else None
            tracing.end_wait(waiting[0][1], fence)
            if recording.active:
                recording.wait("lock", self.key, time.monotonic() - waiting[0][0], fence)
        return taken

    def _tries(
        self, token: str, blocking_timeout: float | None, started: float, waiting: list[Any]
    ) -> Steps[tuple[int, bool] | None]:
        deadline = None if blocking_timeout is None else started + blocking_timeout
        backend = self._backend
        ticket = None  # a hand-over this waiter popped, to claim on its next attempt
        tries = 0
        while True:
            try:
                attempt = yield from ask(
                    Backend.acquire,
                    self.keys,
                    token,
                    self.timeout,
                    blocking_timeout != 0,
                    tries,
                    ticket,
                )
            except BackendUnavailable as exc:
                if exc.outcome_unknown:
                    # The lock may have been taken: release it as soon as the server (or a
                    # promoted replica) answers.
                    ttl = max(self.timeout, 3 * backend.max_wait)
                    release_when_answering(backend, self.keys, token, ttl)
                raise
            if attempt.fence is not None:
                return attempt.fence, tries > 0
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            wait = min(x for x in (backend.max_wait, attempt.retry_in or None, remaining) if x)
            if not waiting:
                waiting.append((time.monotonic(), tracing.start_wait(self.key)))
            try:
                # Blocked here, this waiter is in the server's line; killed, it leaves it.
                ticket = yield from ask(Backend.wait, self.keys, wait)
            except BackendUnavailable:
                # The server died under the wait (a failover): ask again, which reaches the
                # new primary or raises LockUnavailable.
                ticket = None
            tries += 1

    def release(self) -> None:
        """Release the lock if this handle still owns it (never another owner's).

        Inside a database transaction (``until_commit``, ``using``) the release waits for its
        end: at COMMIT, or at ROLLBACK (within ``END_POLL`` seconds), the watchdog keeping the
        lock alive meanwhile; ``held`` stays True until then.

        Raises ``LockLost`` if the lock had expired or been taken over. An unreachable server
        does not raise: the lock is released as soon as the server answers again (or expires
        with its TTL).
        """
        if not self._held_to_the_end():
            drive(self._release(), self._backend)

    def _held_to_the_end(self) -> bool:
        """Whether this release waits for the end of the transaction, made to wait now."""
        if self.until_commit is False or self._ending is not None:
            return self._ending is not None
        if self._token is None or self._pid != os.getpid():
            return False  # release() says what is wrong
        end = transactions.at_end(self._release_at_end, self.using)
        if end is None:
            return False
        self._ending = end
        watchdog.get().watch_end(end)
        logger.debug("holding %s until its transaction ends", self.key)
        return True

    def _release_at_end(self) -> None:
        """The release, once the transaction ended (at COMMIT, or by the watchdog)."""
        self._ending = None
        try:
            drive(self._release(), self._backend)
        except LockLost as exc:
            logger.warning("%s (noticed at the end of its transaction)", exc)

    def _reclaim(self, other: Lock) -> bool:
        """Take over ``other``'s lock, held until the end of this thread's transaction, for
        the same transaction: it is this thread's already (waiting for it would wait for
        ever). The fence goes on; the release waits for the transaction's end again."""
        ending = other._ending
        if ending is None or not ending.cancel():
            return False
        self._token, self.fence, self.lost = other._token, other.fence, other.lost
        self._pid, self._owner, self._acquired_at = other._pid, other._owner, other._acquired_at
        other._token, other._ending = None, None
        ref = note_taken(self)
        if self.auto_renew:
            watchdog.get().watch(self, ref)
        logger.debug("took %s over for the same transaction (fence %s)", self.key, self.fence)
        return True

    async def arelease(self) -> None:
        """:meth:`release` for async code."""
        await adrive(self._release(), self._backend.asynchronous())

    def _release(self) -> Steps[None]:
        token = self._token
        if token is None:
            raise LockError(f"lock {self.key!r} is not held by this handle")
        if self._pid != os.getpid():
            self._token = None
            raise LockError(
                f"lock {self.key!r} was taken by process {self._pid}; this process was forked "
                "from it and does not hold it, so it leaves the lock alone"
            )
        self._forget()
        logger.debug("releasing %s after %.3fs", self.key, time.monotonic() - self._acquired_at)
        try:
            released = yield from ask(Backend.release, self.keys, token)
        except (BackendUnavailable, StoreRefused) as exc:
            logger.warning(
                "could not release %s now, will when the cache answers: %s", self.key, exc
            )
            release_when_answering(self._backend, self.keys, token, self.timeout)
            return
        if not released or self.lost:
            self._mark_lost()
            raise LockLost(
                f"lock {self.key!r} was lost while held (expired or taken over); "
                "the guarded code may have overlapped with another holder"
            )

    def extend(self, seconds: float | None = None) -> None:
        """Reset the lock's TTL to ``seconds`` (default: its ``timeout``) from now."""
        ttl = self.timeout if seconds is None else positive_seconds(seconds, "seconds")
        token = self._token
        if token is None or self._pid != os.getpid():
            raise LockError(f"lock {self.key!r} is not held by this handle")
        try:
            extended = self._backend.extend(self.keys, token, ttl)
        except (BackendUnavailable, StoreRefused) as exc:
            _unavailable(f"cannot extend lock {self.key!r}", exc)
        if not extended:
            self._mark_lost()
            self._forget()  # as release() does: no longer held, no longer current
            raise LockLost(f"lock {self.key!r} was lost before it could be extended")

    def holder(self) -> str | None:
        """Who holds the lock now, as ``"host:pid:random"`` (None when it is free)."""
        try:
            return self._backend.owner(self.keys)
        except (BackendUnavailable, StoreRefused) as exc:
            _unavailable(f"cannot read lock {self.key!r}", exc)

    def locked(self) -> bool:
        """True if some owner (this handle or another) holds the lock now."""
        try:
            return self._backend.owner(self.keys) is not None
        except (BackendUnavailable, StoreRefused) as exc:
            _unavailable(f"cannot read lock {self.key!r}", exc)

    def _renew(self) -> bool:
        """Called by the watchdog; returns True to be called again."""
        token = self._token
        if token is None or self._pid != os.getpid():
            return False
        try:
            extended = self._backend.extend(self.keys, token, self.timeout)
        except (BackendUnavailable, StoreRefused) as exc:
            logger.warning("could not renew %s, will retry: %s", self.key, exc)
            return True
        if token != self._token:
            return False  # released while renewing
        if not extended:
            self._mark_lost()
            logger.warning("lost lock %s while held (fence %s)", self.key, self.fence)
            return False
        return True

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockTimeout(f"could not take lock {self.key!r} within {self.blocking_timeout}s")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._finish(raising=exc_type is not None)

    async def __aenter__(self) -> Lock:
        if not await self.aacquire():
            raise LockTimeout(f"could not take lock {self.key!r} within {self.blocking_timeout}s")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        await self._afinish(raising=exc_type is not None)

    def _finish(self, raising: bool) -> None:
        if not self._held_to_the_end():
            drive(self._finishing(raising), self._backend)

    async def _afinish(self, raising: bool) -> None:
        await adrive(self._finishing(raising), self._backend.asynchronous())

    def _finishing(self, raising: bool) -> Steps[None]:
        """Release after the guarded code; a lost lock raises only if nothing else is raising."""
        try:
            yield from self._release()
        except LockLost:
            if not raising:
                raise
            logger.warning("lock %s was lost while an exception was raised", self.key)


def lock(
    name: str,
    timeout: float = 30,
    blocking_timeout: float | None = None,
    cache: str | None = None,
    *,
    auto_renew: bool = True,
    until_commit: bool | None = None,
    using: str | None = None,
) -> Lock:
    """A lock named ``name`` to use in a ``with`` block.

    ``timeout`` is the TTL in seconds; ``blocking_timeout`` bounds the wait (None: forever,
    0: try once) and raises ``LockTimeout`` when it runs out. Released while the database
    connection ``using`` (default ``"default"``) is inside ``atomic()``, the lock is held until
    that transaction's end (COMMIT or ROLLBACK), so that the next holder sees what this one
    wrote; ``until_commit=False`` releases it at once, ``True`` also refuses to take it
    outside a transaction.

    >>> with transaction.atomic(), lock(f"stock:{pk}", timeout=30) as handle:
    ...     reserve(pk, fence=handle.fence)   # the next holder sees the committed stock
    """
    return Lock(
        name,
        timeout=timeout,
        blocking_timeout=blocking_timeout,
        cache=cache,
        auto_renew=auto_renew,
        until_commit=until_commit,
        using=using,
    )
