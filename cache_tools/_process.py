"""Per-process singletons that survive ``fork``, including uWSGI's own fork of its workers."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.core.cache import caches

T = TypeVar("T")


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


def _caches_guard() -> Any:
    """The lock asgiref's ``Local`` takes around every read of Django's ``caches`` (None in a
    version without one). Read at each fork: a settings change replaces the ``Local``."""
    return getattr(getattr(caches, "_connections", None), "_lock", None)


_held_across_fork: list[Any] = []


def _hold_caches() -> None:
    guard = _caches_guard()
    if guard is not None:
        guard.acquire()
        _held_across_fork.append(guard)


def _release_caches() -> None:
    while _held_across_fork:
        _held_across_fork.pop().release()


# Any thread reading ``caches`` (the statistics flusher, a lock's watchdog, a near cache's
# listener, the application's own) holds that lock for an instant; forked in that instant, the
# child would wait for it for ever at its first ``caches[alias]``. Forking now waits for the
# instant to pass, as ``logging`` does for its own locks.
os.register_at_fork(
    before=_hold_caches, after_in_parent=_release_caches, after_in_child=_release_caches
)
