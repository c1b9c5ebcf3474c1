"""Per-process copies of cache entries (``cache_aside(local=...)``), dropped by the server.

A copy is a cache of the server's entry, never the truth: the server tells every process when
an entry or a generation changes (the adapter's invalidation feed,
:meth:`~cache_tools.backends.base.Backend.track`: Redis client tracking on the namespace's entry
and generation keys), and the process drops its copies at once. While the feed is down, or not
yet up after a fork, copies are neither served nor made.

One listener thread per process and alias (started on first use, so after a fork in uWSGI's
prefork and lazy-apps modes and under gunicorn); a copy lasts at most until its entry would
turn stale or expire, and each function keeps at most ``local`` copies (least recently used
dropped first).

A copy is served only when no invalidation can be pending for this process: the listener is
up, is not applying one, and neither of its two connections has anything unread (a ``poll``
with no timeout, on every local hit) on any of the feed's sockets (an invalidation, or the
server closing them). So a copy is dropped as soon as the server's
message reaches this host, not when the listener thread next gets the GIL (a thread serving
copies in a loop holds it for Python's switch interval, 5 ms). A copy read concurrently with
an invalidation is neither served nor kept: every invalidation bumps an epoch before and
after it applies, and reads that saw another epoch go to the server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from django.core.signals import setting_changed

from . import conf
from .backends import is_current
from .backends.base import Backend, InvalidationFeed

__all__ = ["LocalCopies", "Tracker", "copies_for", "tracker_for"]

logger = logging.getLogger("cache_tools.local_copies")

_CHECK_EVERY = 1.0  # seconds between checks of the tracking connection
_LONGEST_BACKOFF = 1.0


class LocalCopies:
    """The copies of one cached function in this process: value key -> (data, until ms,
    the keys whose change voids it: its generation's and its tags'). ``data`` is the stored
    bytes, or the decoded object with ``keep_objects``."""

    def __init__(self, tracker: Tracker, size: int, keep_objects: bool) -> None:
        self.tracker, self.size, self.keep_objects = tracker, size, keep_objects
        self._copies: OrderedDict[str, tuple[Any, int, tuple[str, ...]]] = OrderedDict()

    def get(self, key: str) -> tuple[Any, int, tuple[str, ...]] | None:
        tracker = self.tracker
        epoch = tracker.epoch
        copy = self._copies.get(key)
        if copy is None:
            return None
        if copy[1] and time.time() * 1000 >= copy[1]:
            self._copies.pop(key, None)  # stale or expired: the server decides what next
            return None
        if not tracker.current() or tracker.epoch != epoch:
            return None  # an invalidation may concern it: ask the server
        with contextlib.suppress(KeyError):  # dropped meanwhile: it was valid when read
            self._copies.move_to_end(key)
        return copy

    def put(
        self, key: str, data: Any, until: int, generations: tuple[str, ...], epoch: int
    ) -> None:
        """Keep a copy made from a read that began at ``epoch``; discarded if an invalidation
        arrived since (it may concern this very entry)."""
        tracker = self.tracker
        if not tracker.healthy or tracker.epoch != epoch:
            return
        self._copies[key] = (data, until, generations)
        tracker.index[key] = self
        while len(self._copies) > self.size:
            try:
                evicted, _ = self._copies.popitem(last=False)
            except KeyError:
                break
            tracker.index.pop(evicted, None)
        if tracker.epoch != epoch:  # an invalidation raced with the lines above
            self.drop(key)

    def drop(self, key: str) -> None:
        self._copies.pop(key, None)
        self.tracker.index.pop(key, None)

    def drop_generation(self, generation_key: str) -> None:
        """Drop the copies voided by a change of ``generation_key`` (a generation or a tag)."""
        self.drop_voided({generation_key})

    def drop_voided(self, changed: set[str]) -> None:
        """Drop the copies voided by a change of any of ``changed`` (one pass)."""
        for key, copy in list(self._copies.items()):
            if not changed.isdisjoint(copy[2]):
                self.drop(key)

    def clear(self) -> None:
        for key in list(self._copies):
            self.drop(key)

    def __len__(self) -> int:
        return len(self._copies)


class Tracker:
    """The invalidation listener of one alias in this process."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.healthy = False
        #: True from the moment the listener takes bytes off its socket until it has applied
        #: them (the hit path cannot see them in the socket meanwhile).
        self.busy = False
        self.epoch = 0
        self.index: dict[str, LocalCopies] = {}  # value key -> the copies holding it
        self.stores: weakref.WeakSet[LocalCopies] = weakref.WeakSet()
        namespace = conf.namespace()
        self.value_prefix = str(backend.server_key(f"{namespace}:v:"))
        self.generation_prefix = str(backend.server_key(f"{namespace}:g:"))
        self.tag_prefix = str(backend.server_key(f"{namespace}:t:"))
        self.invalidations = 0
        self._sockets: tuple[int, ...] = ()  # both connections' descriptors while healthy
        self._pollers = threading.local()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name="cache-tools-local-copies", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        """Stop listening for good (a settings change replaced the adapter, whose servers may
        be gone): no copy is served through this tracker any more, and it stops reconnecting."""
        self._stopped.set()
        self.healthy = False
        self.epoch += 1

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called: the tracker vouches for no copy again."""
        return self._stopped.is_set()

    def current(self) -> bool:
        """True when no invalidation can be waiting for this process: listening, not applying
        one, nothing unread on either connection (a closed or reset socket reads as
        readable)."""
        if not self.healthy or self.busy:
            return False
        sockets = self._sockets
        try:
            return not self._poller(sockets).poll(0)
        except (OSError, ValueError):  # closed meanwhile (the epoch tells the caller too)
            return False

    def _poller(self, sockets: tuple[int, ...]) -> Any:
        """This thread's poll object on ``sockets``: a poll object refuses two threads at once,
        and ``select`` refuses descriptors above 1 023, which a busy server reaches."""
        mine = self._pollers
        if getattr(mine, "sockets", None) != sockets:
            poller = select.poll()
            for socket in sockets:
                poller.register(socket, select.POLLIN)
            mine.poller, mine.sockets = poller, sockets
        return mine.poller

    @property
    def socket(self) -> int:
        """The listener's file descriptor (-1 while not listening)."""
        return self._sockets[0] if self._sockets else -1

    def wait_until_ready(self, timeout: float) -> bool:
        """For tests and warm-up: block until the listener is subscribed and tracking."""
        return self._ready.wait(timeout)

    # Invalidation ------------------------------------------------------------------------

    def _invalidate(self, keys: list[bytes] | None) -> None:
        self.epoch += 1
        self.invalidations += 1
        if keys is None:  # FLUSHDB / FLUSHALL
            self._flush()
            return
        self._drop(keys)
        self.epoch += 1  # a read that began while the copies were being dropped is not served

    def _drop(self, keys: list[bytes]) -> None:
        versions = set()  # generations and tags changed: one pass over the copies for all
        for raw in keys:
            key = raw.decode()
            if key.startswith((self.generation_prefix, self.tag_prefix)):
                versions.add(key)
            else:
                holder = self.index.get(key)
                if holder is not None:
                    holder.drop(key)
        if versions:
            for store in list(self.stores):
                store.drop_voided(versions)

    def _flush(self) -> None:
        self.epoch += 1
        for store in list(self.stores):
            store.clear()
        self.epoch += 1

    # The listener ------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.05
        while not self._stopped.is_set():
            try:
                self._listen()
            except Exception as exc:  # any failure: stop serving copies until back
                if self.healthy:
                    logger.warning("local copies of %r paused: %s", self.backend.alias, exc)
            self.healthy = False
            self._ready.clear()
            self._flush()
            self._stopped.wait(backoff)
            backoff = min(_LONGEST_BACKOFF, backoff * 2)

    def _listen(self) -> None:
        feed = self.backend.track((self.value_prefix, self.generation_prefix, self.tag_prefix))
        try:
            self._flush()  # whatever this process kept before may have missed invalidations
            self._sockets = feed.sockets
            self.healthy = True
            self._ready.set()
            logger.debug("local copies of %r tracked", self.backend.alias)
            checked = time.monotonic()
            while not self._stopped.is_set():
                if feed.wait(_CHECK_EVERY / 2):
                    self._apply_unread(feed)
                if time.monotonic() - checked >= _CHECK_EVERY:
                    feed.check()
                    checked = time.monotonic()
        finally:
            self.healthy = False
            self.epoch += 1  # before the descriptors close and may be reused (see current())
            self._sockets = ()
            feed.close()

    def _apply_unread(self, feed: InvalidationFeed) -> None:
        """Apply every message unread; ``busy`` while any is off the socket and unapplied."""
        self.busy = True
        try:
            for keys in feed.read():
                self._invalidate(keys)
        finally:
            self.busy = False


# Keyed by the adapter itself, not its id(): after a settings change a new adapter may get the
# id of a collected one, and would find a tracker listening to another server.
_trackers: dict[tuple[int, Backend], Tracker] = {}
_guard = threading.Lock()  # held while a tracker's thread starts: a fork can come meanwhile


def _renew_guard() -> None:
    global _guard
    _guard = threading.Lock()  # the parent's may be held by a thread the child does not have


os.register_at_fork(after_in_child=_renew_guard)


def tracker_for(backend: Backend) -> Tracker | None:
    """This process's tracker for ``backend``'s alias (started on first use), or None where the
    backend cannot track or local copies are switched off."""
    if not getattr(backend, "tracking", False) or not conf.get("LOCAL_COPIES"):
        return None
    ident = (os.getpid(), backend)
    tracker = _trackers.get(ident)
    if tracker is None:
        with _guard:
            tracker = _trackers.get(ident)
            if tracker is None:
                if not is_current(backend):
                    return None  # replaced by a settings change while this call ran
                for stale in [k for k in _trackers if k[0] != os.getpid()]:
                    del _trackers[stale]  # a parent's, inherited through fork: not ours
                tracker = _trackers[ident] = Tracker(backend)
    return tracker


def copies_for(
    backend: Backend, function_id: str, size: int, keep_objects: bool
) -> LocalCopies | None:
    """This process's copies of one function's entries, or None (see :func:`tracker_for`)."""
    ident = (os.getpid(), backend, function_id)
    found = _stores.get(ident)  # the hit path: one lookup (settings changes make new adapters)
    if found is not None:
        return found
    tracker = tracker_for(backend)
    if tracker is None:
        return None
    with _guard:
        found = _stores.get(ident)
        if found is None:
            if tracker.stopped:
                return None  # stopped by a settings change since tracker_for returned it
            for inherited in [k for k in _stores if k[0] != ident[0]]:
                del _stores[inherited]  # a parent's, through fork
            found = _stores[ident] = LocalCopies(tracker, size, keep_objects)
            tracker.stores.add(found)
    return found


_stores: dict[tuple[int, Backend, str], LocalCopies] = {}


def _stop_trackers(*, setting: str, **kwargs: object) -> None:
    """A settings change makes new adapters (see :mod:`cache_tools.backends`): stop the
    listeners of the old ones, which would otherwise keep a thread and two connections each,
    reconnecting for ever to servers that may be gone, and forget their copies."""
    if setting in ("CACHES", "CACHE_TOOLS"):
        with _guard:
            for tracker in _trackers.values():
                tracker.stop()
            _trackers.clear()
            _stores.clear()


setting_changed.connect(_stop_trackers)


def drop_voided_by(backend: Backend, version_keys: Iterable[str]) -> None:
    """Drop this process's copies (of every function of ``backend``'s alias) voided by a
    change of ``version_keys`` (tags' versions) this process made: it reads its own writes
    without waiting for the server's invalidation."""
    tracker = _trackers.get((os.getpid(), backend))
    if tracker is not None:
        changed = set(version_keys)
        for store in list(tracker.stores):
            store.drop_voided(changed)
