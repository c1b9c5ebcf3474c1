"""Statistics of cached functions: the one writer, buffered per process, flushed in the
background.

A hit must cost one round trip and nothing more, so every count (hits, misses, computations,
errors) is added to an in-process buffer and sent (``HINCRBY`` in one pipeline per alias) by one
daemon thread at most :data:`FLUSH_DELAY` seconds later, or at process exit. A process that
counts for thousands of distinct functions or locks gathers its batches for longer, in
proportion (2 s for 1 000 counters, at most 5 s), so that its flusher costs what a hundred
counters' would. Counts that cannot be sent during an outage stay buffered until the cache
answers again. Reading the statistics adds this process's unsent counts to the shared ones;
other processes' counts show within ``FLUSH_DELAY`` (up to 5 s from such a process).

The flusher also keeps, off the hit path: each function's counts per minute for an hour (the
dashboard's charts), locks' acquisitions, waits and losses, and the server's registries of the
functions and locks in use, which dashboards and ``cache_stats`` list. Listeners of
:mod:`cache_tools.signals` are told of each event as it is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from typing import NamedTuple

from django.core.exceptions import ImproperlyConfigured

from . import signals
from ._process import PerProcess
from .backends import get_backend
from .backends.base import Backend, ServerKey
from .errors import BackendUnavailable, OutcomeUnknown
from .keys import safe_key

__all__ = [
    "FIELDS",
    "FLUSH_DELAY",
    "LOCK_FIELDS",
    "LOCK_SECONDS",
    "SERIES_MINUTES",
    "CacheInfo",
    "LockInfo",
    "add",
    "clear",
    "flush",
    "lock_event",
    "read",
    "read_lock",
    "read_series",
]

logger = logging.getLogger("cache_tools.stats")

FLUSH_DELAY = 0.2
# Counters one flush may send before the next batch is gathered for longer (in proportion): a
# process counting for thousands of distinct functions or locks sends about this many counters
# per FLUSH_DELAY, so that its flusher costs it and the server what a hundred would (a flush
# of 1 000 functions' counts took 19 ms of the client's CPU on Redis).
_FLUSH_BATCH = 100
_LONGEST_FLUSH_DELAY = 5.0  # the longest a batch is gathered (2 500 counters and more)
#: Minutes of per-minute counts kept on the server (each minute's counts expire after this).
SERIES_MINUTES = 60
#: Seconds a lock's counts, and its name in the registry, outlive its last use.
LOCK_SECONDS = 3600.0
_NOTE_EVERY = 300.0  # seconds between notes of the same name in a registry, per process
_KEEP_NAMES = 10_000  # names a registry keeps (the most recently noted)
_CHECK_EVERY = 10.0  # seconds between checks, per process, that a registry noted in is there


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


class LockInfo(NamedTuple):
    """Counts of one lock over every process: ``acquired`` acquisitions, ``waited`` of them
    after waiting, ``wait_ms`` milliseconds waited in all, ``lost`` locks found expired or
    taken over while held."""

    acquired: int = 0
    waited: int = 0
    wait_ms: int = 0
    lost: int = 0


#: The counted fields of a lock, in :class:`LockInfo` order.
LOCK_FIELDS: tuple[str, ...] = LockInfo._fields

Target = tuple[str, ServerKey]  # (cache alias, statistics key)


class _LockName(str):
    """A lock's name where its statistics key goes in a thread's counts: the flusher makes the
    key (and notes the name in the registry), off the lock's path."""

    __slots__ = ()


Counted = tuple[str, ServerKey | _LockName, str]  # (cache alias, statistics key, field)

#: Counters a thread keeps before it starts a fresh dict (lock names can be as many as the
#: objects they guard; the flusher takes a retired dict's last counts and forgets it).
_THREAD_COUNTERS = 4096


class _ThreadCounts:
    """One thread's counts: written by that thread only, read by the flusher, which sends what
    grew since its last look (so neither ever waits or loses one). The thread retires a dict
    that has grown too many counters and starts a fresh one."""

    __slots__ = ("counts", "retired", "seen", "thread")

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.counts: dict[Counted, int] = {}
        self.retired: deque[dict[Counted, int]] = deque()  # no longer written to
        # What the flusher took of each dict it looked at: (dict, its counts then).
        self.seen: list[tuple[dict[Counted, int], dict[Counted, int]]] = []

    def retire(self) -> None:
        """In the owning thread: count in a new dict, then hand the old one to the flusher (in
        that order: a dict is never current and retired at once)."""
        done, self.counts = self.counts, {}
        self.retired.append(done)

    def taken(self, counts: dict[Counted, int]) -> dict[Counted, int]:
        """In the flusher: what it already took of ``counts`` (forgotten here)."""
        for index, (looked_at, then) in enumerate(self.seen):
            if looked_at is counts:
                del self.seen[index]
                return then
        return {}


class _Buffer:
    """Counts on their way to the server. ``add`` is a dict update in the calling thread's own
    counts (no lock, no event queue: a busy hit path gives the flusher no more work than its
    number of distinct counters); the flusher moves what grew into ``_counts``."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._threads: list[_ThreadCounts] = []
        self._dirty = False  # counted since the flusher last looked
        self._counts: dict[Target, Counter[str]] = {}  # drained, not yet sent
        self._locks: deque[tuple[str, str]] = deque()  # (alias, lock name) taken here
        self._noted: dict[tuple[str, str, str], float] = {}  # (alias, registry, name) -> when
        self._checked: dict[tuple[str, str], float] = {}  # (alias, registry) -> last check
        self._wake = threading.Event()
        self._idle = False
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        # Held while counts are drained and on their way to the server: a flush at exit waits
        # for the background one, and a reader never sees counts that are neither here nor
        # there.
        self._sending = threading.Lock()

    def add(
        self, alias: str, stats_key: ServerKey | _LockName, field: str, amount: int = 1
    ) -> None:
        try:
            mine = self._local.mine
        except AttributeError:
            mine = self._register()
        counts = mine.counts
        key = (alias, stats_key, field)
        counts[key] = counts.get(key, 0) + amount
        if len(counts) > _THREAD_COUNTERS:
            mine.retire()
        self._dirty = True
        if self._idle:
            self._wake.set()  # the flusher sleeps while there is nothing to send

    def _register(self) -> _ThreadCounts:
        mine = _ThreadCounts()
        with self._started:
            self._threads = [*self._threads, mine]  # a new list: the flusher may be reading
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cache-tools-stats", daemon=True
                )
                self._thread.start()
        self._local.mine = mine
        return mine

    def _drain(self) -> None:
        """Move what every thread counted since the last drain into ``_counts`` (the caller
        holds ``_sending``); forget threads that ended, after their last counts."""
        self._dirty = False
        ended = []
        for mine in self._threads:
            try:
                alive = mine.thread.is_alive()
            except (AssertionError, RuntimeError):  # a foreign thread's stand-in, stopped
                alive = False
            while mine.retired:  # retired before the current dict was taken: counted first
                done = mine.retired.popleft()
                self._take(done, mine.taken(done))
            current = mine.counts
            now = current.copy()  # one C call: atomic against the counting thread
            self._take(now, mine.taken(current))
            mine.seen.append((current, now))
            if not alive:
                ended.append(mine)
        if ended:
            with self._started:
                self._threads = [t for t in self._threads if t not in ended]

    def _take(self, now: dict[Counted, int], before: dict[Counted, int]) -> None:
        """Add what grew from ``before`` to ``now`` to the counts on their way."""
        for key, total in now.items():
            grown = total - before.get(key, 0)
            if not grown:
                continue
            alias, counted, field = key
            if isinstance(counted, _LockName):
                stats_key = self._lock_key(alias, counted, field)
                if stats_key is None:
                    continue
            else:
                stats_key = counted
            target = (alias, stats_key)
            counter = self._counts.get(target)
            if counter is None:
                counter = self._counts[target] = Counter()
            counter[field] += grown

    def discard(self, alias: str, stats_key: ServerKey) -> None:
        with self._sending:
            self._drain()
            self._counts.pop((alias, stats_key), None)

    def read(self, alias: str, stats_key: ServerKey, fields: tuple[str, ...]) -> Counter[str]:
        if not get_backend(alias).stores:
            return Counter()  # DummyCache: nothing is cached, so nothing is counted
        with self._sending:
            self._drain()
            counts = Counter(self._counts.get((alias, stats_key), ()))
            counts.update(get_backend(alias).read_counts(stats_key, fields))
        return counts

    def _lock_key(self, alias: str, name: str, field: str) -> ServerKey | None:
        """The statistics key of lock ``name`` (None once the alias is gone from CACHES); an
        acquisition also notes the name for the registry of locks."""
        try:
            backend = get_backend(alias)
        except ImproperlyConfigured:
            return None
        if field == "acquired":
            self._locks.append((alias, str(name)))
        return backend.lock_stats_key(safe_key(name))

    def flush(self) -> int:
        """Send what is buffered; returns how many counters (field of a key) that was."""
        with self._sending:
            self._drain()
            counts, self._counts = self._counts, {}
            by_alias: dict[str, dict[ServerKey, Counter[str]]] = {}
            for (alias, stats_key), counter in counts.items():
                by_alias.setdefault(alias, {})[stats_key] = counter
            locks: dict[str, set[str]] = {}
            while self._locks:
                alias, name = self._locks.popleft()
                locks.setdefault(alias, set()).add(name)
            for alias in by_alias.keys() | locks.keys():
                try:
                    backend = get_backend(alias)
                except ImproperlyConfigured:
                    logger.debug("dropping statistics for %r, no longer in CACHES", alias)
                    continue
                per_key = by_alias.get(alias, {})
                # A function's counts last; a lock's expire an hour after its last count
                # (lock names can be as many as the objects they guard).
                owners = {k: backend.function_of(k) for k in per_key}
                lasting = {k: c for k, c in per_key.items() if owners[k]}
                expiring = {k: c for k, c in per_key.items() if not owners[k]}
                sent, restarted = True, set()
                for group, ttl in ((lasting, None), (expiring, LOCK_SECONDS)):
                    if not group:
                        continue
                    started = self._send(backend, group, ttl) if sent else None
                    if started is None:
                        sent = False  # kept for the next flush
                        for stats_key, counter in group.items():
                            self._counts.setdefault((alias, stats_key), Counter()).update(counter)
                    else:
                        restarted |= started
                if not sent:
                    continue
                try:
                    functions = [f for k in lasting if (f := owners[k])]
                    self._record(backend, lasting, functions, locks.get(alias, set()), restarted)
                except Exception as exc:  # charts and registries only; the counts are sent
                    logger.debug("could not record the minute or names for %r: %s", alias, exc)
        return sum(map(len, counts.values()))

    @staticmethod
    def _send(
        backend: Backend, counts: dict[ServerKey, Counter[str]], ttl: float | None
    ) -> set[ServerKey] | None:
        """The statistics keys the server started anew (see ``Backend.add_counts``); None
        when nothing reached it (the caller keeps the counts). Counts that may have been
        added (the reply was lost) are dropped: sent again, they would count twice."""
        try:
            started = backend.add_counts(counts, ttl=ttl)
        except OutcomeUnknown:
            logger.debug("statistics for %r may not have been counted", backend.alias)
            return set()
        except BackendUnavailable:
            return None
        except Exception:
            logger.exception("could not send cache statistics for %r", backend.alias)
            return set()
        return set(started or ())  # an adapter written before add_counts returned the keys

    def _record(
        self,
        backend: Backend,
        per_function: dict[ServerKey, Counter[str]],
        functions: list[str],
        locks: set[str],
        restarted: set[ServerKey],
    ) -> None:
        """This minute's counts of each function (``per_function``: by statistics key;
        ``functions``: their dotted paths), and the names the registries lack.

        A name is noted again every ``_NOTE_EVERY`` seconds, and at once when the server has
        started its counts anew (``restarted``) or lost the registry alone (eviction): this
        process's record of having noted it is only a cache of the registry."""
        now = time.time()
        minute = int(now // 60)
        series = {backend.minute_key(k, minute): c for k, c in per_function.items()}
        if series:
            backend.add_counts(series, ttl=SERIES_MINUTES * 60 + 60)
        forgotten: set[str] = set()
        if restarted:  # rare: spare the lock names' keys otherwise (they can be thousands)
            forgotten = {f for k in restarted if (f := backend.function_of(k))}
            forgotten |= {n for n in locks if backend.lock_stats_key(safe_key(n)) in restarted}
        for kind, names, max_age in (
            ("functions", functions, None),
            ("locks", locks, LOCK_SECONDS),
        ):
            if not names:
                continue
            registry = backend.registry_key(kind)
            lost = self._lost(backend, kind, registry, now)
            due = {
                name: now
                for name in names
                if lost
                or name in forgotten
                or now - self._noted.get((backend.alias, kind, name), 0.0) > _NOTE_EVERY
            }
            if due:
                backend.note_names(registry, due, _KEEP_NAMES, max_age=max_age)
                self._noted.update({(backend.alias, kind, name): now for name in due})
                self._checked.setdefault((backend.alias, kind), now)

    def _lost(self, backend: Backend, kind: str, registry: ServerKey, now: float) -> bool:
        """Whether a registry this process noted names in is gone from the server (eviction
        can take it alone, the counts surviving), looked at every ``_CHECK_EVERY`` seconds;
        then this process's record of what it noted there is forgotten."""
        where = (backend.alias, kind)
        checked = self._checked.get(where)
        if checked is None or now - checked < _CHECK_EVERY:
            return False  # nothing noted yet (all names are due), or looked at lately
        self._checked[where] = now
        if backend.has_names(registry):
            return False
        self._noted = {noted: when for noted, when in self._noted.items() if noted[:2] != where}
        return True

    def _run(self) -> None:
        delay = FLUSH_DELAY
        while True:
            if not self._dirty and not self._counts and not self._locks:
                self._idle = True
                if not self._dirty:  # an add between the test above and the flag
                    self._wake.wait()
                self._wake.clear()
                self._idle = False
                delay = FLUSH_DELAY
            threading.Event().wait(delay)  # gather a batch
            delay = _flush_delay(self.flush())


def _flush_delay(counters: int) -> float:
    """Seconds to gather the next batch after a flush of ``counters`` counters: 0.2 for up to
    100, 2.0 for 1 000, 5.0 for 2 500 and more."""
    return min(_LONGEST_FLUSH_DELAY, FLUSH_DELAY * max(1.0, counters / _FLUSH_BATCH))


_buffer = PerProcess(_Buffer)


def add(alias: str, stats_key: ServerKey, field: str, amount: int = 1) -> None:
    """Count ``amount`` on ``field`` of a function's statistics, without a round trip."""
    _buffer.get().add(alias, stats_key, field, amount)
    if signals.listening:
        signals.cache_event(alias, get_backend(alias).function_of(stats_key), field)


def lock_event(
    backend: Backend, name: str, *, waited: float | None = None, lost: bool = False
) -> None:
    """Count a lock's acquisition (``waited`` seconds, None: taken at once) or its loss."""
    buffer, alias, lock = _buffer.get(), backend.alias, _LockName(name)
    if lost:
        buffer.add(alias, lock, "lost")
    else:
        buffer.add(alias, lock, "acquired")
        if waited is not None:
            buffer.add(alias, lock, "waited")
            buffer.add(alias, lock, "wait_ms", round(waited * 1000))
    if signals.listening:
        signals.lock_event(alias, name, waited, lost)


def read(alias: str, stats_key: ServerKey) -> CacheInfo:
    """The shared counts plus what this process has not sent yet."""
    counts = _buffer.get().read(alias, stats_key, FIELDS)
    return CacheInfo(*(counts[field] for field in FIELDS))


def read_lock(alias: str, name: str) -> LockInfo:
    """A lock's counts over every process (this one's unsent counts included)."""
    stats_key = get_backend(alias).lock_stats_key(safe_key(name))
    counts = _buffer.get().read(alias, stats_key, LOCK_FIELDS)
    return LockInfo(*(counts[field] for field in LOCK_FIELDS))


def read_series(
    alias: str, stats_key: ServerKey, minutes: int = SERIES_MINUTES
) -> list[tuple[int, CacheInfo]]:
    """A function's counts in each of the last ``minutes`` minutes, oldest first, as
    ``(minute, counts)`` (``minute``: Unix time // 60; the current minute is still counting)."""
    backend = get_backend(alias)
    now = int(time.time() // 60)
    wanted = list(range(now - minutes + 1, now + 1))
    rows = backend.read_counts_many([backend.minute_key(stats_key, m) for m in wanted], FIELDS)
    return [
        (minute, CacheInfo(*(row[field] for field in FIELDS)))
        for minute, row in zip(wanted, rows, strict=True)
    ]


def clear(alias: str, stats_key: ServerKey) -> None:
    """Reset a function's statistics to zero, for every process."""
    _buffer.get().discard(alias, stats_key)
    get_backend(alias).delete_counts(stats_key, FIELDS)


def flush() -> None:
    """Send every buffered count now (also done at exit, and in the background
    ``FLUSH_DELAY`` seconds after a count, longer after a large batch)."""
    _buffer.get().flush()


# Run at interpreter exit before threads are joined, and also by multiprocessing's children,
# which leave through os._exit and so skip plain atexit handlers.
threading._register_atexit(flush)  # type: ignore[attr-defined]
