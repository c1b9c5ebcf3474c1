"""The lock watchdog: one daemon thread per process that renews held ``auto_renew`` locks on
time and releases locks held to the end of a transaction once it ended without a COMMIT.

>>> watchdog.get().watch(handle, weakref.ref(handle))   # renewed every timeout / 3
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from typing import Any, Protocol

from . import transactions
from ._process import PerProcess

__all__ = ["END_POLL", "Renewable", "Watchdog", "watchdog"]

logger = logging.getLogger("cache_tools.lock")


class Renewable(Protocol):
    """A lock handle, as the watchdog sees it."""

    timeout: float
    key: str

    @property
    def held(self) -> bool: ...

    def _renew(self) -> bool:
        """Renew now; True to be called again."""
        ...


_IDLE_TICK = 1.0
#: Seconds between looks at the transactions that locks are held to the end of.
END_POLL = 0.05


class Watchdog:
    """One daemon thread per process that renews every held ``auto_renew`` lock on time.

    Taking a lock appends a weak reference to a queue (no lock, no thread switch); releasing
    it costs nothing here (the watchdog drops handles that no longer hold their lock). The
    thread wakes at least once a second, and at once only for a lock due before then, so a
    stream of short locks never wakes it. A handle garbage-collected while held stops being
    renewed.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._new: collections.deque[tuple[weakref.ref[Any], float]] = collections.deque()
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

    def watch(self, held: Renewable, ref: weakref.ref[Any]) -> None:
        """Renew ``held`` (``ref`` refers to it) until it is released."""
        due = time.monotonic() + held.timeout / 3
        self._new.append((ref, due))
        if due < self._wake_at:
            with self._condition:
                self._wake_at = due
                self._condition.notify()

    def _run(self) -> None:
        due: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        while True:
            self._renew_due(due)
            self._finish_ended()
            with self._condition:
                now = time.monotonic()
                tick = END_POLL if self._ends else _IDLE_TICK
                self._wake_at = min([*due.values(), now + tick])
                if not self._new:  # a lock taken since the drain: go round again at once
                    self._condition.wait(max(0.0, self._wake_at - now))

    def _renew_due(self, due: weakref.WeakKeyDictionary[Any, float]) -> None:
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
            if not held.held:
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


watchdog = PerProcess(Watchdog)
