"""Locks that may have been taken although the caller was told otherwise.

When the server stalls (paused, overloaded, a long fork for persistence), a client gives up
after its socket timeout, but the server still runs the queued request when it resumes: a lock
is then held by a token that no caller holds, and would block everyone until its TTL. Every
path that takes a lock (locks, single flight, stale refresh) hands such a token here; one
thread per process releases it (compare-and-delete, so never another owner's lock) as soon as
the alias answers again.

A release that finds the lock not ours is only believed when a second one, sent after the
first was answered, agrees: the first may have overtaken the lost request on the server.

These releases are the only requests cache_tools sends again after a reply was lost (see
:mod:`cache_tools.backends._wire`), and they are idempotent by construction: a release
compares the lock with its token before deleting it, so a second one changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from ._process import PerProcess
from .backends.base import Backend, LockKeys
from .errors import BackendUnavailable, StoreRefused

__all__ = ["pending", "release_when_answering"]

logger = logging.getLogger("cache_tools.lock")

RETRY_DELAY = 0.05


@dataclass
class _Orphan:
    backend: Backend
    keys: LockKeys
    token: str
    deadline: float
    not_ours: int = 0


class _Releaser:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._orphans: dict[tuple[str, str], _Orphan] = {}
        self._thread: threading.Thread | None = None

    def add(self, backend: Backend, keys: LockKeys, token: str, ttl: float) -> None:
        orphan = _Orphan(backend, keys, token, time.monotonic() + ttl)
        with self._condition:
            self._orphans[(backend.alias, token)] = orphan
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cache-tools-orphans", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def pending(self) -> int:
        with self._condition:
            return len(self._orphans)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._orphans:
                    self._condition.wait()
                orphans = list(self._orphans.items())
            for ident, orphan in orphans:
                if self._settled(orphan):
                    with self._condition:
                        self._orphans.pop(ident, None)
            time.sleep(RETRY_DELAY)

    @staticmethod
    def _settled(orphan: _Orphan) -> bool:
        if time.monotonic() > orphan.deadline:
            return True  # expired on the server by now
        try:
            released = orphan.backend.release(orphan.keys, orphan.token)
        except (BackendUnavailable, StoreRefused):
            orphan.not_ours = 0
            return False
        except Exception:
            logger.exception("could not release the lost acquisition of %s", orphan.keys.lock)
            return True
        if released:
            logger.warning("released %s, taken by a request whose reply was lost", orphan.keys.lock)
            return True
        orphan.not_ours += 1
        return orphan.not_ours >= 2


_releaser = PerProcess(_Releaser)


def release_when_answering(backend: Backend, keys: LockKeys, token: str, ttl: float) -> None:
    """Release the lock ``keys`` if ``token`` holds it, as soon as ``backend`` answers; give up
    after ``ttl`` seconds (the lock has expired by then)."""
    _releaser.get().add(backend, keys, token, ttl)


def pending() -> int:
    """How many such acquisitions this process has yet to settle (for tests and dashboards)."""
    return _releaser.get().pending()
