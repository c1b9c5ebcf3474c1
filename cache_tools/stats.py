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
from collections.abc import Callable
from typing import Any, NamedTuple

from django.core.exceptions import ImproperlyConfigured

from . import signals
from ._process import PerProcess
from .backends import get_backend
from .backends.base import Backend, ServerKey
from .errors import BackendUnavailable, OutcomeUnknown

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
    "read_locks",
    "read_many",
    "read_series",
    "read_tags",
    "tag_invalidated",
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
#: Lock names the server keeps counts for, the most recently used (names can be as many as the
#: objects they guard: per-object locks are not listed one by one beyond this).
LOCK_NAMES_KEPT = 1000
#: The pseudo-function whose per-minute counts are every function's, summed (the charts).
ALL_FUNCTIONS = "*"
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


class _LockName(str):
    """A lock's name where a function's statistics key goes in the counts."""

    __slots__ = ()


class _TagName(str):
    """A tag's name, counted like a lock's (its invalidations), in a record of its own."""

    __slots__ = ()


#: The counted field of a tag, and how many tag names the server keeps counts for.
TAG_FIELDS: tuple[str, ...] = ("invalidated",)
TAG_NAMES_KEPT = 1000

#: The named records, by kind: the type of their names in the buffer, their fields, and how
#: many names the server keeps (read when sending: a setting of this module).
_NAMED: dict[str, tuple[type[_LockName | _TagName], tuple[str, ...], Callable[[], int]]] = {
    "locks": (_LockName, LOCK_FIELDS, lambda: LOCK_NAMES_KEPT),
    "tags": (_TagName, TAG_FIELDS, lambda: TAG_NAMES_KEPT),
}


CountedKey = ServerKey | _LockName | _TagName
Target = tuple[str, CountedKey]  # (cache alias, statistics key, lock or tag name)
Counted = tuple[str, CountedKey, str]  # (cache alias, statistics key, field)

#: Counters a thread keeps before it starts a fresh dict (lock names can be as many as the
#: objects they guard; the flusher takes a retired dict's last counts and forgets it). With the
#: flusher's copy of what it took, a thread holds at most about 0.3 MB of counts (at 4 096:
#: 1.2 MB per thread, and a process's traced memory swung 0.9 MB with where it stood in a cycle).
_THREAD_COUNTERS = 1024


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

    def add(self, alias: str, stats_key: CountedKey, field: str, amount: int = 1) -> None:
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
            target = (alias, counted)
            counter = self._counts.get(target)
            if counter is None:
                counter = self._counts[target] = Counter()
            counter[field] += grown

    def discard(self, alias: str, stats_key: ServerKey) -> None:
        with self._sending:
            self._drain()
            self._counts.pop((alias, stats_key), None)

    def read(self, alias: str, stats_key: ServerKey, fields: tuple[str, ...]) -> Counter[str]:
        return self.read_many(alias, [stats_key], fields)[0]

    def read_many(
        self, alias: str, stats_keys: list[ServerKey], fields: tuple[str, ...]
    ) -> list[Counter[str]]:
        """Several functions' counts, in one round trip, with this process's unsent ones."""
        backend = get_backend(alias)
        if not backend.stores:
            return [Counter() for _ in stats_keys]  # DummyCache: nothing is counted
        with self._sending:
            self._drain()
            rows = [Counter(self._counts.get((alias, key), ())) for key in stats_keys]
            for row, shared in zip(rows, backend.read_counts_many(stats_keys, fields), strict=True):
                row.update(shared)
        return rows

    def read_locks(
        self, alias: str, names: list[str] | None = None, kind: str = "locks"
    ) -> dict[str, Counter[str]]:
        """Locks' (or tags') counts by name (every one the server keeps, with ``names``
        None), with this process's unsent ones."""
        backend = get_backend(alias)
        if not backend.stores:
            return {name: Counter() for name in names or ()}
        named, fields, _ = _NAMED[kind]
        with self._sending:
            self._drain()
            shared = backend.read_lock_counts(fields, names, kind)
            if names is None:  # and those this process counted but has not sent yet
                for counted_alias, key in self._counts:
                    if counted_alias == alias and type(key) is named:
                        shared.setdefault(str(key), {})
            return {
                name: Counter(self._counts.get((alias, named(name)), ())) + Counter(counts)
                for name, counts in shared.items()
            }

    def flush(self) -> int:
        """Send what is buffered; returns how many counters (field of a key) that was."""
        with self._sending:
            self._drain()
            counts, self._counts = self._counts, {}
            by_alias: dict[str, dict[CountedKey, Counter[str]]] = {}
            for (alias, key), counter in counts.items():
                by_alias.setdefault(alias, {})[key] = counter
            for alias, per_key in by_alias.items():
                try:
                    backend = get_backend(alias)
                except ImproperlyConfigured:
                    logger.debug("dropping statistics for %r, no longer in CACHES", alias)
                    continue
                functions = {k: c for k, c in per_key.items() if type(k) is ServerKey}
                if functions:
                    self._send_functions(backend, functions)
                for kind, (named, _, _) in _NAMED.items():
                    counted = {str(k): c for k, c in per_key.items() if type(k) is named}
                    if counted:
                        self._send_named(backend, counted, kind)
        return sum(map(len, counts.values()))

    def _keep(self, alias: str, counted: dict[Any, Counter[str]]) -> None:
        """Counts nothing reached the server with: sent at the next flush."""
        for key, counter in counted.items():
            self._counts.setdefault((alias, key), Counter()).update(counter)

    def _send_functions(self, backend: Backend, counts: dict[ServerKey, Counter[str]]) -> None:
        started = self._send(backend, counts)
        if started is None:
            self._keep(backend.alias, counts)
            return
        try:
            functions = {key: f for key in counts if (f := backend.function_of(key))}
            self._record(backend, counts, functions, started)
        except Exception as exc:  # charts and registries only; the counts are sent
            logger.debug("could not record the minute or names for %r: %s", backend.alias, exc)

    def _send_named(self, backend: Backend, counts: dict[str, Counter[str]], kind: str) -> None:
        """Locks' (or tags') counts and names in one bounded record per alias and kind
        (``LOCK_NAMES_KEPT``, ``TAG_NAMES_KEPT``)."""
        named, fields, keep = _NAMED[kind]
        try:
            backend.add_lock_counts(counts, fields, keep(), LOCK_SECONDS, kind)
        except OutcomeUnknown:
            logger.debug("lock statistics for %r may not have been counted", backend.alias)
        except BackendUnavailable:
            self._keep(backend.alias, {named(name): c for name, c in counts.items()})
        except Exception:
            logger.exception("could not send lock statistics for %r", backend.alias)

    @staticmethod
    def _send(backend: Backend, counts: dict[ServerKey, Counter[str]]) -> set[ServerKey] | None:
        """The statistics keys the server started anew (see ``Backend.add_counts``); None
        when nothing reached it (the caller keeps the counts). Counts that may have been
        added (the reply was lost) are dropped: sent again, they would count twice."""
        try:
            started = backend.add_counts(counts)
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
        functions: dict[ServerKey, str],
        restarted: set[ServerKey],
    ) -> None:
        """This minute's counts of each function and of all of them (``per_function``: by
        statistics key; ``functions``: their dotted paths), and the names the registry lacks.

        A name is noted again every ``_NOTE_EVERY`` seconds, and at once when the server has
        started its counts anew (``restarted``) or lost the registry alone (eviction): this
        process's record of having noted it is only a cache of the registry."""
        now = time.time()
        minute = int(now // 60)
        series = {backend.minute_key(k, minute): c for k, c in per_function.items()}
        summed: Counter[str] = Counter()
        for key in functions:
            summed.update(per_function[key])
        if summed:
            series[backend.minute_key(backend.stats_key(ALL_FUNCTIONS), minute)] = summed
        if series:
            backend.add_counts(series, ttl=SERIES_MINUTES * 60 + 60)
        if not functions:
            return
        forgotten = {functions[key] for key in restarted if key in functions}
        registry = backend.registry_key("functions")
        lost = self._lost(backend, "functions", registry, now)
        self._noted = {k: when for k, when in self._noted.items() if now - when <= _NOTE_EVERY}
        due = {
            name: now
            for name in functions.values()
            if lost or name in forgotten or (backend.alias, "functions", name) not in self._noted
        }
        if due:
            backend.note_names(registry, due, _KEEP_NAMES)
            self._noted.update({(backend.alias, "functions", name): now for name in due})
            self._checked.setdefault((backend.alias, "functions"), now)

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
            if not self._dirty and not self._counts:
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


def tag_invalidated(alias: str, tag: str) -> None:
    """Count an invalidation of ``tag`` in ``alias``, without a round trip."""
    _buffer.get().add(alias, _TagName(tag), "invalidated")


def read_tags(alias: str) -> dict[str, int]:
    """Invalidations of every tag the server keeps counts for (the ``TAG_NAMES_KEPT`` most
    recently invalidated), this process's unsent ones included."""
    counted = _buffer.get().read_locks(alias, kind="tags")
    return {name: counts["invalidated"] for name, counts in counted.items()}


def read(alias: str, stats_key: ServerKey) -> CacheInfo:
    """The shared counts plus what this process has not sent yet."""
    counts = _buffer.get().read(alias, stats_key, FIELDS)
    return CacheInfo(*(counts[field] for field in FIELDS))


def read_lock(alias: str, name: str) -> LockInfo:
    """A lock's counts over every process (this one's unsent counts included); zeros for a
    lock the server no longer keeps (see ``LOCK_NAMES_KEPT``)."""
    counts = _buffer.get().read_locks(alias, [name]).get(name, Counter())
    return LockInfo(*(counts[field] for field in LOCK_FIELDS))


def read_locks(alias: str) -> dict[str, LockInfo]:
    """Every lock the server keeps counts for (the ``LOCK_NAMES_KEPT`` most recently used)."""
    counted = _buffer.get().read_locks(alias)
    return {
        name: LockInfo(*(counts[field] for field in LOCK_FIELDS))
        for name, counts in counted.items()
    }


def read_many(alias: str, stats_keys: list[ServerKey]) -> list[CacheInfo]:
    """:func:`read` of several functions, in one round trip."""
    rows = _buffer.get().read_many(alias, stats_keys, FIELDS)
    return [CacheInfo(*(counts[field] for field in FIELDS)) for counts in rows]


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
