"""Statistics counters of cached functions, buffered per process and flushed in the background.

A hit must cost one round trip and nothing more, so hit counts are added to an in-process
buffer and sent (``HINCRBY`` in one pipeline per alias) by one daemon thread at most
:data:`FLUSH_DELAY` seconds later, at process exit, or when ``cache_info()`` is read. Counts that
cannot be sent during an outage stay buffered until the cache answers again. Reading the
statistics adds this process's unsent counts to the shared ones; other processes' counts show
within ``FLUSH_DELAY``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from django.core.exceptions import ImproperlyConfigured

from ._process import PerProcess
from .backends import get_backend
from .errors import BackendUnavailable

__all__ = ["FLUSH_DELAY", "add", "discard", "flush", "unsent"]

logger = logging.getLogger("cache_tools.stats")

FLUSH_DELAY = 0.2

Target = tuple[str, str]  # (cache alias, statistics key)


class _Buffer:
    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._counts: dict[Target, Counter[str]] = {}
        self._thread: threading.Thread | None = None

    def add(self, alias: str, stats_key: str, field: str, amount: int = 1) -> None:
        with self._condition:
            was_empty = not self._counts
            self._counts.setdefault((alias, stats_key), Counter())[field] += amount
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cache-tools-stats", daemon=True
                )
                self._thread.start()
            elif was_empty:
                self._condition.notify()  # the flusher sleeps while there is nothing to send

    def unsent(self, alias: str, stats_key: str) -> Counter[str]:
        with self._condition:
            return Counter(self._counts.get((alias, stats_key), ()))

    def discard(self, alias: str, stats_key: str) -> None:
        with self._condition:
            self._counts.pop((alias, stats_key), None)

    def flush(self) -> None:
        with self._condition:
            counts, self._counts = self._counts, {}
        by_alias: dict[str, dict[str, Counter[str]]] = {}
        for (alias, stats_key), counter in counts.items():
            by_alias.setdefault(alias, {})[stats_key] = counter
        for alias, per_key in by_alias.items():
            try:
                get_backend(alias).add_counts(per_key)
            except ImproperlyConfigured:
                logger.debug("dropping statistics for %r, no longer in CACHES", alias)
            except BackendUnavailable:
                with self._condition:
                    for stats_key, counter in per_key.items():
                        self._counts.setdefault((alias, stats_key), Counter()).update(counter)
            except Exception:
                logger.exception("could not send cache statistics for %r", alias)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._counts:
                    self._condition.wait()
            threading.Event().wait(FLUSH_DELAY)  # gather a batch
            self.flush()


_buffer = PerProcess(_Buffer)


def add(alias: str, stats_key: str, field: str, amount: int = 1) -> None:
    """Count ``amount`` on ``field`` of a function's statistics, without a round trip."""
    _buffer.get().add(alias, stats_key, field, amount)


def unsent(alias: str, stats_key: str) -> Counter[str]:
    """What this process has counted for ``stats_key`` and not sent yet."""
    return _buffer.get().unsent(alias, stats_key)


def discard(alias: str, stats_key: str) -> None:
    _buffer.get().discard(alias, stats_key)


def flush() -> None:
    """Send every buffered count now (also done at exit and every ``FLUSH_DELAY`` seconds)."""
    _buffer.get().flush()


# Run at interpreter exit before threads are joined, and also by multiprocessing's children,
# which leave through os._exit and so skip plain atexit handlers.
threading._register_atexit(flush)
