"""Per-process singletons that survive ``fork``, including uWSGI's own fork of its workers."""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from django.core.cache import caches

T = TypeVar("T")

logger = logging.getLogger(__name__)


class PerProcess(Generic[T]):
    """One ``factory()`` result per process, made again in a forked child on first use.

    The process id is checked on every ``get()`` (not only in ``os.register_at_fork`` hooks)
    because a server that forks from C, as uWSGI does with preloaded apps, may not run them.
    Threads started by the parent's instance do not exist in the child; the child's instance
    starts its own.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._pid = 0
        self._value: T | None = None
        self._guard = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._guard = threading.Lock()  # the parent's may have been held by a vanished thread
        self._pid = 0

    def get(self) -> T:
        if self._pid != os.getpid():
            with self._guard:
                if self._pid != os.getpid():
                    self._value = self._factory()
                    self._pid = os.getpid()
        return self._value  # type: ignore[return-value]


# Random delays' source: a generator of each process's own (forked herds would otherwise draw
# the same "random" backoffs) and not the global one, which belongs to the application.
jitter: PerProcess[random.Random] = PerProcess(random.Random)


def hold_across_fork(locks: Callable[[], Iterable[Any]]) -> None:
    """Make every fork from Python wait until the locks ``locks()`` names are free, and hold
    them through it: the child never inherits one held by a thread it does not have (it
    would wait for it for ever), as ``logging`` does for its own locks.

    ``locks`` is called at each fork and names only locks this process made or reset (one
    inherited from a parent may be held for ever: it is waited for ``_FORK_WAIT`` seconds,
    then the fork goes ahead without it).

    >>> hold_across_fork(lambda: [registry_lock])
    """
    _fork_guards.append(locks)


_fork_guards: list[Callable[[], Iterable[Any]]] = []
_held_across_fork = threading.local()  # per forking thread: two may fork at once
_FORK_WAIT = 2.0


def _hold() -> None:
    held = _held_across_fork.locks = []
    for guards in _fork_guards:
        for lock in guards():
            if lock.acquire(timeout=_FORK_WAIT):
                held.append(lock)
            else:
                logger.warning("forking while %r is held: the child may wait for it", lock)


def _release() -> None:
    held = getattr(_held_across_fork, "locks", [])
    while held:
        held.pop().release()


os.register_at_fork(before=_hold, after_in_parent=_release, after_in_child=_release)


def _caches_guard() -> list[Any]:
    """The lock asgiref's ``Local`` takes around every read of Django's ``caches`` (none in a
    version without one); read at each fork, as a settings change replaces the ``Local``.

    Any thread reading ``caches`` (the statistics flusher, a lock's watchdog, the
    application's own) holds it for an instant, and a finalizer run in that instant can let
    another thread fork."""
    guard = getattr(getattr(caches, "_connections", None), "_lock", None)
    return [] if guard is None else [guard]


hold_across_fork(_caches_guard)
