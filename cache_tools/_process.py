"""Per-process singletons that survive ``fork``, including uWSGI's own fork of its workers."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

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
