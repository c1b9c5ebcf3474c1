"""Statistics of cached functions: the one writer, buffered per process, flushed in the
background.

A hit must cost one round trip and nothing more, so every count (hits, misses, computations,
errors) is added to an in-process buffer and sent (``HINCRBY`` in one pipeline per alias) by one
daemon thread at most :data:`FLUSH_DELAY` seconds later, or at process exit. Counts that cannot
be sent during an outage stay buffered until the cache answers again. Reading the statistics
adds this process's unsent counts to the shared ones; other processes' counts show within
``FLUSH_DELAY``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import NamedTuple

from django.core.exceptions import ImproperlyConfigured

from ._process import PerProcess
from .backends import get_backend
from .backends.base import ServerKey
from .errors import BackendUnavailable

__all__ = ["FIELDS", "FLUSH_DELAY", "CacheInfo", "add", "clear", "flush", "read"]

logger = logging.getLogger("cache_tools.stats")

FLUSH_DELAY = 0.2


class CacheInfo(NamedTuple):
    """Statistics of one cached function or view, summed over every process sharing the cache.

    ``hits`` and ``stale_hits`` count calls answered from the cache (waiters that got another
    caller's result count as hits), ``misses`` calls that computed, ``computations`` every run of
    the function (refreshes and failures too), ``errors`` cache-side failures (outages, refused
    or unserialisable values), ``local_hits`` calls answered from this process's own copy
    (``cache_aside(local=...)``; not included in ``hits``).
    """

    hits: int = 0
    misses: int = 0
    stale_hits: int = 0
    computations: int = 0
    errors: int = 0
    local_hits: int = 0


#: The counted fields, in :class:`CacheInfo` order.
FIELDS: tuple[str, ...] = CacheInfo._fields

Target = tuple[str, ServerKey]  # (cache alias, statistics key)


class _Buffer:
    """Counts on their way to the server. ``add`` is one append to a deque (atomic, no lock,
    so threads on the hit path never contend); the flusher drains it into ``_counts``."""

    def __init__(self) -> None:
        self._events: deque[tuple[str, ServerKey, str, int]] = deque()
        self._counts: dict[Target, Counter[str]] = {}  # drained, not yet sent
        self._wake = threading.Event()
        self._idle = False
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        # Held while counts are drained and on their way to the server: a flush at exit waits
        # for the background one, and a reader never sees counts that are neither here nor
        # there.
        self._sending = threading.Lock()

    def add(self, alias: str, stats_key: ServerKey, field: str, amount: int = 1) -> None:
        self._events.append((alias, stats_key, field, amount))
        if self._thread is None:
            self._start()
        elif self._idle:
            self._wake.set()  # the flusher sleeps while there is nothing to send

    def _start(self) -> None:
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cache-tools-stats", daemon=True
                )
                self._thread.start()

    def _drain(self) -> None:
        """Move appended events into ``_counts`` (the caller holds ``_sending``)."""
        events, counts = self._events, self._counts
        while True:
            try:
                alias, stats_key, field, amount = events.popleft()
            except IndexError:
                return
            target = (alias, stats_key)
            counter = counts.get(target)
            if counter is None:
                counter = counts[target] = Counter()
            counter[field] += amount

    def discard(self, alias: str, stats_key: ServerKey) -> None:
        with self._sending:
            self._drain()
            self._counts.pop((alias, stats_key), None)

    def read(self, alias: str, stats_key: ServerKey) -> CacheInfo:
        if not get_backend(alias).stores:
            return CacheInfo()  # DummyCache: nothing is cached, so nothing is counted
        with self._sending:
            self._drain()
            counts = Counter(self._counts.get((alias, stats_key), ()))
            counts.update(get_backend(alias).read_counts(stats_key, FIELDS))
        return CacheInfo(*(counts[field] for field in FIELDS))

    def flush(self) -> None:
        with self._sending:
            self._drain()
            counts, self._counts = self._counts, {}
            by_alias: dict[str, dict[ServerKey, Counter[str]]] = {}
            for (alias, stats_key), counter in counts.items():
                by_alias.setdefault(alias, {})[stats_key] = counter
            for alias, per_key in by_alias.items():
                try:
                    get_backend(alias).add_counts(per_key)
                except ImproperlyConfigured:
                    logger.debug("dropping statistics for %r, no longer in CACHES", alias)
                except BackendUnavailable:  # kept for the next flush
                    for stats_key, counter in per_key.items():
                        self._counts.setdefault((alias, stats_key), Counter()).update(counter)
                except Exception:
                    logger.exception("could not send cache statistics for %r", alias)

    def _run(self) -> None:
        while True:
            if not self._events and not self._counts:
                self._idle = True
                if not self._events:  # an add between the test above and the flag
                    self._wake.wait()
                self._wake.clear()
                self._idle = False
            threading.Event().wait(FLUSH_DELAY)  # gather a batch
            self.flush()


_buffer = PerProcess(_Buffer)


def add(alias: str, stats_key: ServerKey, field: str, amount: int = 1) -> None:
    """Count ``amount`` on ``field`` of a function's statistics, without a round trip."""
    _buffer.get().add(alias, stats_key, field, amount)


def read(alias: str, stats_key: ServerKey) -> CacheInfo:
    """The shared counts plus what this process has not sent yet."""
    return _buffer.get().read(alias, stats_key)


def clear(alias: str, stats_key: ServerKey) -> None:
    """Reset a function's statistics to zero, for every process."""
    _buffer.get().discard(alias, stats_key)
    get_backend(alias).delete_counts(stats_key, FIELDS)


def flush() -> None:
    """Send every buffered count now (also done at exit and every ``FLUSH_DELAY`` seconds)."""
    _buffer.get().flush()


# Run at interpreter exit before threads are joined, and also by multiprocessing's children,
# which leave through os._exit and so skip plain atexit handlers.
threading._register_atexit(flush)  # type: ignore[attr-defined]
