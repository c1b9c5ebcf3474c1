"""A lock that holds across threads, processes and hosts, on the cache server.

.. code-block:: python

    from cache_tools import lock, lock_decorator

    @lock_decorator(timeout=30)
    def fetch_remote_thing(name): ...          # one call per name at a time, everywhere

    with lock("reports:monthly", timeout=30, blocking_timeout=5) as handle:
        write_report(fence=handle.fence)

Waiters block on the release signal instead of polling; a holder that dies is replaced once its
TTL runs out; with ``auto_renew`` a watchdog keeps a long call's lock alive and reports a lost
one; ``handle.fence`` increases strictly with every acquisition of a key.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import enum
import functools
import inspect
import itertools
import logging
import os
import secrets
import socket
import sys
import threading
import time
import types
import warnings
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import (
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    cast,
    overload,
)

from asgiref.sync import markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from . import checks, conf, stats, transactions
from ._options import applied_bare, positive_seconds, seconds_or_zero
from ._process import PerProcess
from .backends import get_backend
from .backends.base import Backend
from .drive import Steps, adrive, call, drive
from .errors import (
    BackendUnavailable,
    LockError,
    LockLost,
    LockTimeout,
    LockUnavailable,
    StoreRefused,
)
from .keys import KeyMaker, raw_key, safe_key
from .orphans import release_when_answering

__all__ = [
    "AsyncLockedFunction",
    "Lock",
    "LockedFunction",
    "current_lock",
    "lock",
    "lock_decorator",
]

logger = logging.getLogger("cache_tools.lock")

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")
OnTimeout = Literal["raise", "skip"] | Callable[..., Any]

# The locks this thread or task took, innermost last. Weak: a handle dropped while held is
# collected (with a ResourceWarning) instead of being kept alive by this record.
_held: contextvars.ContextVar[tuple[weakref.ref[Lock], ...]] = contextvars.ContextVar(
    "cache_tools_held_locks", default=()
)

_HOST = socket.gethostname()
# Tokens: host, pid, a random part drawn once per process (again after a fork) and a counter;
# unique without a system call per lock.
_token_parts = PerProcess(
    lambda: (f"{_HOST}:{os.getpid()}:{secrets.token_hex(6)}", itertools.count())
)


def _new_token() -> str:
    prefix, counter = _token_parts.get()
    return f"{prefix}{next(counter):x}"


def _held_here(pid: int | None = None) -> list[Lock]:
    """The handles this thread or task holds, in this process (a forked child holds none)."""
    held = _held.get()
    if not held:
        return []
    pid = os.getpid() if pid is None else pid
    return [
        handle
        for ref in held
        if (handle := ref()) is not None and handle._token is not None and handle._pid == pid
    ]


def _owner() -> object:
    """Who takes a lock: the running asyncio task, else the thread. A task created inside a
    ``with lock(...)`` block sees the lock as ``current_lock()`` (contexts are copied) but may
    still wait for it like any other task."""
    loop = asyncio._get_running_loop()  # None outside a loop (get_running_loop would raise)
    task = asyncio.current_task(loop) if loop is not None else None
    return task if task is not None else threading.get_ident()


def current_lock() -> Lock | None:
    """The innermost lock held by the running thread or task, or None.

    >>> @lock_decorator
    ... def write(row):
    ...     save(row, fence=current_lock().fence)
    """
    held = _held_here()
    return held[-1] if held else None


class Default(enum.Enum):
    """The type of :data:`DEFAULT`."""

    DEFAULT = "the handle's own"


#: ``acquire()``'s default wait: the handle's ``blocking_timeout``.
DEFAULT = Default.DEFAULT


def _validate_transaction_options(until_commit: Any, using: Any) -> None:
    if until_commit not in (None, True, False):
        raise ValueError(f"until_commit must be None, True or False, not {until_commit!r}")
    if using is not None and using not in connections:
        raise ValueError(f"using must name a database in DATABASES, not {using!r}")


def _validate_blocking_timeout(blocking_timeout: Any) -> float | None:
    if blocking_timeout is None:
        return None
    return seconds_or_zero(blocking_timeout, "blocking_timeout")


def _unavailable(message: str, exc: BackendUnavailable | StoreRefused) -> LockUnavailable:
    error = LockUnavailable(f"{message}: {exc}")
    error.outcome_unknown = getattr(exc, "outcome_unknown", False)
    return error


_IDLE_TICK = 1.0
#: Seconds between looks at the transactions that locks are held to the end of.
END_POLL = 0.05


class _Watchdog:
    """One daemon thread per process that renews every held ``auto_renew`` lock on time.

    Taking a lock appends a weak reference to a queue (no lock, no thread switch); releasing
    it costs nothing here (the watchdog drops handles that no longer hold their lock). The
    thread wakes at least once a second, and at once only for a lock due before then, so a
    stream of short locks never wakes it. A handle garbage-collected while held stops being
    renewed.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._new: collections.deque[tuple[weakref.ref[Lock], float]] = collections.deque()
        self._wake_at = 0.0
        # Locks held to the end of a transaction, released here if it ends without a COMMIT.
        self._ends: set[transactions.TransactionEnd] = set()
        threading.Thread(target=self._run, name="cache-tools-lock-watchdog", daemon=True).start()

    def watch_end(self, end: transactions.TransactionEnd) -> None:
        """Run ``end`` (a release) as soon as its transaction is seen ended, if COMMIT did
        not run it: ROLLBACK, a closed connection. Looked at every ``END_POLL`` seconds."""
        with self._condition:
            self._ends.add(end)
            self._wake_at = 0.0
            self._condition.notify()

    def _finish_ended(self) -> None:
        for end in list(self._ends):
            if end.ended():
                self._ends.discard(end)
                end.run()  # nothing if COMMIT ran it

    def watch(self, held: Lock, ref: weakref.ref[Lock]) -> None:
        """Renew ``held`` (``ref`` refers to it) until it is released."""
        due = time.monotonic() + held.timeout / 3
        self._new.append((ref, due))
        if due < self._wake_at:
            with self._condition:
                self._wake_at = due
                self._condition.notify()

    def _run(self) -> None:
        due: weakref.WeakKeyDictionary[Lock, float] = weakref.WeakKeyDictionary()
        while True:
            self._renew_due(due)
            self._finish_ended()
            with self._condition:
                now = time.monotonic()
                tick = END_POLL if self._ends else _IDLE_TICK
                self._wake_at = min([*due.values(), now + tick])
                if not self._new:  # a lock taken since the drain: go round again at once
                    self._condition.wait(max(0.0, self._wake_at - now))

    def _renew_due(self, due: weakref.WeakKeyDictionary[Lock, float]) -> None:
        """Take in new locks, forget released ones, renew those due (strong references to
        handles live only as long as this call)."""
        while self._new:
            ref, when = self._new.popleft()
            held = ref()
            if held is not None:
                due[held] = when  # a handle's latest acquisition wins
        now = time.monotonic()
        ready = []
        for held, when in list(due.items()):
            if held._token is None:
                del due[held]  # released, or lost
            elif when <= now:
                del due[held]
                ready.append(held)
        for held in ready:
            try:
                renew = held._renew()
            except Exception:  # one lock's failure must not stop every renewal
                logger.exception("unexpected failure renewing %s; will retry", held.key)
                renew = True
            if renew:
                due[held] = time.monotonic() + held.timeout / 3


_watchdog = PerProcess(_Watchdog)


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
        "_keys",
        "_owner",
        "_pid",
        "_token",
        "alias",
        "auto_renew",
        "blocking_timeout",
        "fence",
        "key",
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
        self.blocking_timeout = _validate_blocking_timeout(blocking_timeout)
        _validate_transaction_options(until_commit, using)
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
        self._keys = self._backend.lock_keys(safe_key(name))
        self.key: str = self._keys.lock
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
            owner = yield call("owner", self._keys)
        except (BackendUnavailable, StoreRefused) as exc:
            raise _unavailable(f"cannot read lock {self.key!r}", exc) from exc.__cause__ or exc
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
        _held.set(tuple([ref for ref in _held.get() if ref() not in (None, self)]))

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
            self.blocking_timeout if wait_for is DEFAULT else _validate_blocking_timeout(wait_for)
        )
        pid = os.getpid()
        if self._pid != pid:
            self._token = None  # taken by the process this one was forked from
        if self.until_commit and not transactions.in_transaction(self.using):
            raise LockError(
                f"lock {self.key!r} is to be held until COMMIT (until_commit=True), but database "
                f"{self.using or 'default'!r} is in no transaction: wrap it in atomic()"
            )
        if self._token is not None and self._reclaim(self):
            return True
        if self._token is not None and (yield from self._still_held()):
            raise LockError(f"lock {self.key!r} is already held by this handle")
        owner = _owner()
        for other in _held_here(pid):
            same = other.alias == self.alias and other.key == self.key and other._owner == owner
            if same and self._reclaim(other):
                return True
            if same and (yield from other._still_held()):
                raise LockError(
                    f"lock {self.key!r} is already held by this thread or task; "
                    "re-entering it would wait for itself"
                )
        token = _new_token()
        started = time.monotonic()
        deadline = None if blocking_timeout is None else started + blocking_timeout
        backend = self._backend
        ticket = None  # a hand-over this waiter popped, to claim on its next attempt
        try:
            for attempt in itertools.count():
                try:
                    taken, number = yield call(
                        "acquire",
                        self._keys,
                        token,
                        self.timeout,
                        blocking_timeout != 0,
                        attempt,
                        ticket,
                    )
                except BackendUnavailable as exc:
                    if exc.outcome_unknown:
                        # The lock may have been taken: release it as soon as the server (or a
                        # promoted replica) answers.
                        ttl = max(self.timeout, 3 * backend.max_wait)
                        release_when_answering(backend, self._keys, token, ttl)
                    raise
                if taken:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    logger.debug("gave up on %s after %.3fs", self.key, time.monotonic() - started)
                    return False
                wait = min(x for x in (backend.max_wait, number or None, remaining) if x)
                try:
                    # Blocked here, this waiter is in the server's line; killed, it leaves it.
                    ticket = yield call("wait", self._keys, wait)
                except BackendUnavailable:
                    # The server died under the wait (a failover): ask again, which reaches
                    # the new primary or raises LockUnavailable.
                    ticket = None
                    continue
        except (BackendUnavailable, StoreRefused) as exc:
            raise _unavailable(f"cannot take lock {self.key!r}", exc) from exc.__cause__ or exc
        self._token, self.fence, self.lost = token, int(number), False
        self._pid, self._owner = pid, owner
        self._acquired_at = time.monotonic()
        waited = self._acquired_at - started if attempt else None
        stats.lock_event(self._backend, self.name, waited=waited)
        ref = weakref.ref(self)
        _held.set((*[held for held in _held.get() if (h := held()) is not None and h._token], ref))
        logger.debug(
            "took %s (fence %s) after %.3fs", self.key, self.fence, self._acquired_at - started
        )
        if self.auto_renew:
            _watchdog.get().watch(self, ref)
        return True

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
        _watchdog.get().watch_end(end)
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
        ref = weakref.ref(self)
        _held.set((*[held for held in _held.get() if (h := held()) is not None and h._token], ref))
        if self.auto_renew:
            _watchdog.get().watch(self, ref)
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
            released = yield call("release", self._keys, token)
        except (BackendUnavailable, StoreRefused) as exc:
            logger.warning(
                "could not release %s now, will when the cache answers: %s", self.key, exc
            )
            release_when_answering(self._backend, self._keys, token, self.timeout)
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
            extended = self._backend.extend(self._keys, token, ttl)
        except (BackendUnavailable, StoreRefused) as exc:
            raise _unavailable(f"cannot extend lock {self.key!r}", exc) from exc.__cause__ or exc
        if not extended:
            self._mark_lost()
            self._forget()  # as release() does: no longer held, no longer current
            raise LockLost(f"lock {self.key!r} was lost before it could be extended")

    def holder(self) -> str | None:
        """Who holds the lock now, as ``"host:pid:random"`` (None when it is free)."""
        try:
            return self._backend.owner(self._keys)
        except (BackendUnavailable, StoreRefused) as exc:
            raise _unavailable(f"cannot read lock {self.key!r}", exc) from exc.__cause__ or exc

    def locked(self) -> bool:
        """True if some owner (this handle or another) holds the lock now."""
        try:
            return self._backend.owner(self._keys) is not None
        except (BackendUnavailable, StoreRefused) as exc:
            raise _unavailable(f"cannot read lock {self.key!r}", exc) from exc.__cause__ or exc

    def _renew(self) -> bool:
        """Called by the watchdog; returns True to be called again."""
        token = self._token
        if token is None or self._pid != os.getpid():
            return False
        try:
            extended = self._backend.extend(self._keys, token, self.timeout)
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
        await adrive(self._finishing(raising=exc_type is not None), self._backend.asynchronous())

    def _finish(self, raising: bool) -> None:
        if not self._held_to_the_end():
            drive(self._finishing(raising), self._backend)

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


def _validate_on_timeout(on_timeout: Any) -> None:
    if on_timeout not in ("raise", "skip") and not callable(on_timeout):
        raise ValueError(f'on_timeout must be "raise", "skip" or a callable, not {on_timeout!r}')


@dataclass(frozen=True)
class _LockOptions:
    key_maker: KeyMaker
    timeout: float
    blocking_timeout: float | None
    cache: str | None
    on_timeout: OnTimeout
    auto_renew: bool
    on_backend_error: Literal["raise", "run"]
    until_commit: bool | None
    using: str | None


class _Locked(Generic[P, R]):
    """What sync and async locked functions share: the options and the lock's key."""

    def __init__(self, func: Callable[P, Any], options: _LockOptions) -> None:
        functools.update_wrapper(cast(Any, self), func)
        self.__wrapped__ = func
        self._options = options

    def __repr__(self) -> str:
        return f"<locked function {self.__wrapped__.__module__}.{self.__wrapped__.__qualname__}>"

    def _handle(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Lock:
        options = self._options
        return Lock(
            raw_key(self.__wrapped__, args, kwargs, options.key_maker),  # Lock makes it safe
            timeout=options.timeout,
            blocking_timeout=options.blocking_timeout,
            cache=options.cache,
            auto_renew=options.auto_renew,
            until_commit=options.until_commit,
            using=options.using,
        )

    def _timed_out(self, handle: Lock) -> LockTimeout:
        return LockTimeout(
            f"{self.__wrapped__.__qualname__}: could not take lock {handle.key!r} "
            f"within {self._options.blocking_timeout}s"
        )

    def lock_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key of the lock these arguments take, as the server stores it."""
        return self._handle(args, kwargs).key

    def is_locked(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """True if some caller holds the lock these arguments take, now."""
        return self._handle(args, kwargs).locked()


class LockedFunction(_Locked[P, R]):
    """What :func:`lock_decorator` returns: the function, with the same parameters and return
    type, run under its lock; ``lock_key(...)`` and ``is_locked(...)`` take its arguments."""

    __wrapped__: Callable[P, R]

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> LockedFunction[P, R]: ...
    @overload
    def __get__(
        self: LockedFunction[Concatenate[S, Q], R], instance: S, owner: type | None = None
    ) -> Callable[Q, R]: ...
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        func, options = self.__wrapped__, self._options
        handle = self._handle(args, kwargs)
        try:
            acquired = handle.acquire()
        except LockUnavailable as exc:
            if options.on_backend_error == "raise":
                raise
            logger.warning("running %s WITHOUT its lock: %s", func.__qualname__, exc)
            return func(*args, **kwargs)
        if not acquired:
            if options.on_timeout == "raise":
                raise self._timed_out(handle)
            if options.on_timeout == "skip":
                return None  # type: ignore[return-value]  # typed R | None by the decorator
            return options.on_timeout(*args, **kwargs)  # type: ignore[no-any-return]
        try:
            return func(*args, **kwargs)
        finally:
            handle._finish(raising=sys.exc_info()[0] is not None)


class AsyncLockedFunction(_Locked[P, R]):
    """The same for an ``async def`` function: the lock is taken and released without
    blocking the event loop (``on_timeout`` may then be a coroutine function)."""

    __wrapped__: Callable[P, Awaitable[R]]

    def __init__(self, func: Callable[P, Awaitable[R]], options: _LockOptions) -> None:
        super().__init__(func, options)
        markcoroutinefunction(self)  # inspect and asgiref see an async callable

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> AsyncLockedFunction[P, R]: ...
    @overload
    def __get__(
        self: AsyncLockedFunction[Concatenate[S, Q], R], instance: S, owner: type | None = None
    ) -> Callable[Q, Awaitable[R]]: ...
    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        func, options = self.__wrapped__, self._options
        handle = self._handle(args, kwargs)
        try:
            acquired = await handle.aacquire()
        except LockUnavailable as exc:
            if options.on_backend_error == "raise":
                raise
            logger.warning("running %s WITHOUT its lock: %s", func.__qualname__, exc)
            return await func(*args, **kwargs)
        if not acquired:
            if options.on_timeout == "raise":
                raise self._timed_out(handle)
            if options.on_timeout == "skip":
                return None  # type: ignore[return-value]  # typed R | None by the decorator
            fallback = options.on_timeout(*args, **kwargs)
            return await fallback if inspect.isawaitable(fallback) else fallback  # type: ignore[no-any-return]
        try:
            return await func(*args, **kwargs)
        finally:
            raising = sys.exc_info()[0] is not None
            await adrive(handle._finishing(raising), handle._backend.asynchronous())


class LockDecorator(Protocol):
    """What ``lock_decorator(...)`` returns: a decorator for sync and ``async def``
    functions."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncLockedFunction[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> LockedFunction[P, R]: ...


class SkippingLockDecorator(Protocol):
    """``lock_decorator(on_timeout="skip")``: the function may return None instead."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncLockedFunction[P, R | None]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> LockedFunction[P, R | None]: ...


@overload
def lock_decorator(  # type: ignore[overload-overlap]
    key_maker: Callable[P, Coroutine[Any, Any, R]], /
) -> AsyncLockedFunction[P, R]: ...
@overload
def lock_decorator(key_maker: Callable[P, R], /) -> LockedFunction[P, R]: ...  # type: ignore[overload-overlap]
@overload
def lock_decorator(
    key_maker: KeyMaker = None,
    *,
    timeout: float = 30,
    blocking_timeout: float | None = None,
    cache: str | None = None,
    on_timeout: Literal["skip"],
    auto_renew: bool = True,
    on_backend_error: Literal["raise", "run"] = "raise",
    until_commit: bool | None = None,
    using: str | None = None,
) -> SkippingLockDecorator: ...
@overload
def lock_decorator(
    key_maker: KeyMaker = None,
    *,
    timeout: float = 30,
    blocking_timeout: float | None = None,
    cache: str | None = None,
    on_timeout: Literal["raise"] | Callable[..., Any] = "raise",
    auto_renew: bool = True,
    on_backend_error: Literal["raise", "run"] = "raise",
    until_commit: bool | None = None,
    using: str | None = None,
) -> LockDecorator: ...


def lock_decorator(
    key_maker: Any = None,
    *,
    timeout: float = 30,
    blocking_timeout: float | None = None,
    cache: str | None = None,
    on_timeout: OnTimeout = "raise",
    auto_renew: bool = True,
    on_backend_error: Literal["raise", "run"] = "raise",
    until_commit: bool | None = None,
    using: str | None = None,
) -> Any:
    """Run the decorated function under a lock keyed by ``key_maker`` (default: function + args).

    Works bare (``@lock_decorator``) or called (``@lock_decorator(timeout=10)``). Pass a callable
    ``key_maker`` by keyword (a lambda may also be passed positionally). On timeout,
    ``on_timeout="raise"`` raises ``LockTimeout``, ``"skip"`` returns None, and a callable is
    called with the function's arguments instead. If the cache server cannot be reached,
    ``LockUnavailable`` is raised and the function does not run; ``on_backend_error="run"`` runs
    it unlocked instead (unsafe: only for work that tolerates running twice at once). The
    decorated function keeps its parameters and return type for type checkers (``R | None``
    with ``on_timeout="skip"``). Called inside ``atomic()`` on the database ``using``, the lock
    is held until the transaction's end (COMMIT or ROLLBACK), so that the next caller sees
    what this one wrote (``until_commit``: see :func:`lock`).

    >>> @lock_decorator(key_maker=lambda request, part: "api_stats_calculations")
    ... def api_stats_calculations(request, part): ...
    """
    if applied_bare(key_maker):
        return lock_decorator()(key_maker)
    positive_seconds(timeout, "timeout")
    _validate_blocking_timeout(blocking_timeout)
    _validate_on_timeout(on_timeout)
    if on_backend_error not in ("raise", "run"):
        raise ValueError(f'on_backend_error must be "raise" or "run", not {on_backend_error!r}')
    _validate_transaction_options(until_commit, using)
    options = _LockOptions(
        key_maker,
        timeout,
        blocking_timeout,
        cache,
        on_timeout,
        auto_renew,
        on_backend_error,
        until_commit,
        using,
    )

    def decorate(func: Callable[P, Any]) -> _Locked[P, Any]:
        checks.record_use(cache, f"@lock_decorator {func.__module__}.{func.__qualname__}", True)
        if inspect.iscoroutinefunction(func):
            return AsyncLockedFunction(func, options)
        return LockedFunction(func, options)

    return decorate
