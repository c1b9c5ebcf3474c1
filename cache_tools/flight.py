"""The single-flight, stale-while-revalidate engine, written once for every cached thing.

:class:`Flight` answers "give me the value for this argument key, computing it at most once
across every process": :func:`~cache_tools.cache_aside`, :func:`~cache_tools.cache_view` and
``warm_cache`` all go through it. It talks only to the backend contract.

Failures are kept apart from the caller's own code: only backend calls are guarded. An outage
(:class:`~cache_tools.errors.BackendUnavailable`) computes without the cache; a refused store
(:class:`~cache_tools.errors.StoreRefused`) returns the computed value uncached; both count an
error and warn once. Exceptions raised by the computation itself always reach the caller.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from asgiref.sync import sync_to_async

from . import recording, stats, tracing, transactions
from .backends import get_backend
from .backends.base import HIT, MISS, STALE, Backend, EntryKeys, Fetched, ServerKey
from .drive import COMPUTE, Steps, adrive, ask, drive
from .errors import BackendUnavailable, StoreRefused
from .local_copies import LocalCopies, copies_for
from .orphans import release_when_answering
from .refresher import refresher
from .sharing import NOTHING, UNCACHEABLE_SECONDS, leader_of, leading, unstored

__all__ = ["NOT_STORED", "UNCACHED", "AlsoStore", "Flight", "Timeout"]

logger = logging.getLogger("cache_tools.aside")

T = TypeVar("T")
Timeout = float | None | Callable[[Any], float | None]

#: Returned by a computation as its value to store when its result must not be cached.
NOT_STORED: Any = object()
_NO_COPY: Any = object()
#: The state of a result computed but not cached because the cache was down or refused it.
UNCACHED = "uncached"


@dataclass(frozen=True)
class AlsoStore:
    """What a computation returns to store a second entry with its own: ``value`` under
    ``argument_key`` (in ``scope``) of the same function, by the same rule as its own entry
    (nothing is stored if an invalidation came since the computation began). ``own`` is what
    to store under the computation's own key.

    >>> return response, AlsoStore(own=pointer, argument_key=varied_key, scope=path, value=page)
    """

    own: Any
    argument_key: str
    scope: str | None
    value: Any


Compute = Callable[[], tuple[T, Any]]
AsyncCompute = Callable[[], Awaitable[tuple[T, Any]]]
#: A background refresh the steps ask for: the generation seen, and the entry's lock as
#: ``(token, fence)`` when the caller already took it.
Refresh = tuple[int, "tuple[str, int] | None"]


class _Warnings:
    """One warning per outage of an alias, and one per refusal kind of a function."""

    def __init__(self) -> None:
        self._down: set[str] = set()
        self._refused: set[tuple[str, str, type[Exception]]] = set()

    def outage(self, backend: Backend, keys: EntryKeys, error: Exception) -> None:
        stats.add(backend.alias, keys.stats, "errors")
        if backend.alias not in self._down:
            self._down.add(backend.alias)
            logger.warning(
                "cache %r is unavailable, computing without it: %s", backend.alias, error
            )

    def answered(self, alias: str) -> None:
        if alias in self._down:
            self._down.discard(alias)
            logger.warning("cache %r is reachable again", alias)

    def refused(self, backend: Backend, keys: EntryKeys, name: str, error: Exception) -> None:
        stats.add(backend.alias, keys.stats, "errors")
        kind = (backend.alias, name, type(error))
        if kind not in self._refused:
            self._refused.add(kind)
            logger.warning("not caching the result of %s: %s", name, error)


_warnings = _Warnings()


@dataclass
class Flight(Generic[T]):
    """The single-flight, stale-while-revalidate engine for one cached function or view.

    ``get(argument_key, compute)`` returns ``(state, value)``: ``state`` is ``"hit"``,
    ``"stale"``, ``"miss"`` or :data:`UNCACHED`; on the last two ``value`` is what
    ``compute()`` returned, otherwise the stored value. ``compute()`` returns
    ``(result, to_store)``; ``to_store`` is :data:`NOT_STORED` when the result must not be
    cached. ``scope`` (optional) names a part of the function with a generation of its own (a
    view's path). ``aget`` is the same for a coroutine function ``compute``, on the adapter's
    async twin: the logic is written once, as steps (:mod:`cache_tools.drive`).
    """

    function_id: str
    alias: str | None
    timeout: Timeout
    stale: float
    lock: bool
    lock_timeout: float
    version: Any = None
    #: Copies kept in this process (at most this many), or None for none.
    local: int | None = None
    #: Keep copies as decoded objects (shared by the callers of this process), not bytes.
    keep_objects: bool = False
    #: Hand a result that could not be stored to the callers of this process waiting for it
    #: (False for views: a response not stored may be its visitor's alone).
    share_unstored: bool = True
    #: Refresh a stale entry in the caller that found it (which then computes; the others are
    #: served stale meanwhile) rather than in the background: for computations that need the
    #: caller's own state (a template fragment renders its context).
    refresh_inline: bool = False

    @property
    def backend(self) -> Backend:
        return get_backend(self.alias)

    def keys(
        self,
        argument_key: str,
        backend: Backend | None = None,
        scope: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> EntryKeys:
        """The keys of the entry for ``argument_key``; ``tags``: sorted and distinct."""
        return (backend or self.backend).entry_keys(
            self.function_id, argument_key, self.version, scope, tags
        )

    # Drivers -----------------------------------------------------------------------------

    def _copies(self, backend: Backend) -> LocalCopies | None:
        if self.local is None:
            return None
        return copies_for(backend, self.function_id, self.local, self.keep_objects)

    def _from_copy(self, backend: Backend, keys: EntryKeys, copies: LocalCopies) -> Any:
        copy = copies.get(keys.value)
        if copy is None:
            return _NO_COPY
        stats.add(backend.alias, keys.stats, "local_hits")
        if recording.active:
            recording.local_hit()
        return copy[0] if copies.keep_objects else backend.decode(copy[0])

    def _keep_copy(
        self, copies: LocalCopies | None, keys: EntryKeys, read: Fetched, epoch: int
    ) -> None:
        if copies is not None and read.payload is not None:
            data = read.value if copies.keep_objects else read.payload
            copies.put(keys.value, data, read.until, keys.generations, epoch)

    def get(
        self,
        argument_key: str,
        compute: Compute[T],
        scope: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> tuple[str, Any]:
        if not recording.active:
            return self._get(argument_key, compute, scope, tags)
        started = time.perf_counter()
        state, value = self._get(argument_key, compute, scope, tags)
        self._record(argument_key, scope, tags, state, started)
        return state, value

    async def aget(
        self,
        argument_key: str,
        compute: AsyncCompute[T],
        scope: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> tuple[str, Any]:
        if not recording.active:
            return await self._aget(argument_key, compute, scope, tags)
        started = time.perf_counter()
        state, value = await self._aget(argument_key, compute, scope, tags)
        self._record(argument_key, scope, tags, state, started)
        return state, value

    def _record(
        self,
        argument_key: str,
        scope: str | None,
        tags: tuple[str, ...],
        state: str,
        started: float,
    ) -> None:
        """Note a call in the open recording (:mod:`cache_tools.recording`)."""
        key = self.keys(argument_key, scope=scope, tags=tags).value
        recording.call(self.function_id, key, state, time.perf_counter() - started)

    def _get(
        self,
        argument_key: str,
        compute: Compute[T],
        scope: str | None,
        tags: tuple[str, ...],
    ) -> tuple[str, Any]:
        if tags and transactions.collected(tags):  # this transaction wrote what it rests on
            return UNCACHED, compute()[0]
        backend = self.backend
        keys = self.keys(argument_key, backend, scope, tags)
        copies = self._copies(backend)
        epoch = 0
        if copies is not None:
            value = self._from_copy(backend, keys, copies)
            if value is not _NO_COPY:
                return HIT, value
            epoch = copies.tracker.epoch
        fetched: Fetched | BackendUnavailable
        try:
            read = backend.read(keys)
        except BackendUnavailable as exc:
            fetched = exc
        else:
            fetched = read
            if read.state == HIT:  # the hit path: one round trip, nothing else
                _warnings.answered(backend.alias)
                stats.add(backend.alias, keys.stats, "hits")
                self._keep_copy(copies, keys, read, epoch)
                return HIT, read.value
        state, value, refresh = drive(self._after_read(backend, keys, fetched), backend, compute)
        if refresh is not None:
            tracing.event("cache_tools.stale_refresh", self.function_id)
            steps = self._refresh(backend, keys, *refresh)
            if self.refresh_inline:
                drive(steps, backend, compute)
            else:
                refresher.get().submit(
                    keys.value, lambda: drive(steps, backend, compute), self.function_id
                )
        return state, value

    async def _aget(
        self,
        argument_key: str,
        compute: AsyncCompute[T],
        scope: str | None,
        tags: tuple[str, ...],
    ) -> tuple[str, Any]:
        if tags and transactions.collected(tags):  # this transaction wrote what it rests on
            return UNCACHED, (await compute())[0]
        backend = self.backend
        twin = backend.asynchronous()
        keys = self.keys(argument_key, backend, scope, tags)
        copies = self._copies(backend)
        while True:
            epoch = 0
            if copies is not None:
                value = self._from_copy(backend, keys, copies)
                if value is not _NO_COPY:
                    return HIT, value
                epoch = copies.tracker.epoch
            fetched: Fetched | BackendUnavailable
            try:
                read = await twin.read(keys)
            except BackendUnavailable as exc:
                fetched = exc
            else:
                fetched = read
                if read.state == HIT:
                    _warnings.answered(backend.alias)
                    stats.add(backend.alias, keys.stats, "hits")
                    self._keep_copy(copies, keys, read, epoch)
                    return HIT, read.value
                if read.state == MISS:
                    # One coroutine per loop goes to the server for a cold key; the others of
                    # this loop wait for it here, then read what it stored (their own copy).
                    leader = leader_of(keys.value)
                    if leader is not None:
                        waited_from = time.monotonic()
                        await leader.wait()
                        shared = unstored.get().since(keys.value, waited_from)
                        if shared is not NOTHING:  # computed, but it could not be stored
                            stats.add(backend.alias, keys.stats, "hits")
                            return HIT, shared
                        continue
                    with leading(keys.value):
                        return await self._alead(backend, twin, keys, fetched, compute)
            return await self._alead(backend, twin, keys, fetched, compute)

    async def _alead(
        self,
        backend: Backend,
        twin: Any,
        keys: EntryKeys,
        fetched: Fetched | BackendUnavailable,
        compute: AsyncCompute[T],
    ) -> tuple[str, Any]:
        steps = self._after_read(backend, keys, fetched)
        state, value, refresh = await adrive(steps, twin, compute)
        if refresh is not None:
            tracing.event("cache_tools.stale_refresh", self.function_id)
            refresh_steps = self._refresh(backend, keys, *refresh)
            refresher.get().submit_task(
                keys.value, lambda: adrive(refresh_steps, twin, compute), self.function_id
            )
        return state, value

    def refresh(
        self,
        argument_key: str,
        compute: Compute[T],
        scope: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> tuple[str, T]:
        """Compute anew and store, whatever the entry holds; ``(state, result)``. A computation
        of the entry in flight is waited for first (its result may predate this call), and an
        invalidation while this one computes voids its store, as for every other."""
        backend = self.backend
        keys = self.keys(argument_key, backend, scope, tags)
        return drive(self._recompute(backend, keys), backend, compute)

    async def arefresh(
        self,
        argument_key: str,
        compute: AsyncCompute[T],
        scope: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> tuple[str, T]:
        backend = self.backend
        keys = self.keys(argument_key, backend, scope, tags)
        return await adrive(self._recompute(backend, keys), backend.asynchronous(), compute)

    # The steps, written once -------------------------------------------------------------

    def _after_read(
        self, backend: Backend, keys: EntryKeys, fetched: Fetched | BackendUnavailable
    ) -> Steps[tuple[str, Any, Refresh | None]]:
        """From a read that was not a fresh hit to a value: serve stale, wait for another
        caller's computation, or compute and store. Returns ``(state, value, refresh)``;
        ``refresh`` asks the driver to refresh in the background."""
        if isinstance(fetched, BackendUnavailable):
            result = yield from self._without_cache(backend, keys, fetched)
            return UNCACHED, result, None
        _warnings.answered(backend.alias)
        token = secrets.token_hex(16) if self.lock else None
        if fetched.state == STALE and token:
            stats.add(backend.alias, keys.stats, "stale_hits")
            return STALE, fetched.value, (fetched.generation, None)
        # A miss (or, without single flight, a stale entry): read again on the server, taking
        # the entry's lock if it is free, or learning how long to wait.
        return (yield from self._take_or_wait(backend, keys, token))

    def _recompute(self, backend: Backend, keys: EntryKeys) -> Steps[tuple[str, T]]:
        """``refresh()``: take the entry's lock even on a fresh hit (after a computation in
        flight), then compute and store, so that an invalidation meanwhile voids the store."""
        state, result, _ = yield from self._take_or_wait(
            backend, keys, secrets.token_hex(16), recompute=True
        )
        return state, result

    def _take_or_wait(
        self, backend: Backend, keys: EntryKeys, token: str | None, recompute: bool = False
    ) -> Steps[tuple[str, Any, Refresh | None]]:
        """Take the entry's lock and compute, or wait for the caller who holds it; without
        ``recompute``, what that caller stored meanwhile is served instead (or, in this
        process, what it computed but could not store)."""
        waited_from, waited = time.monotonic(), False
        while True:
            try:
                found = yield from ask(Backend.fetch, keys, token, self.lock_timeout, recompute)
            except BackendUnavailable as exc:
                self._maybe_orphaned(backend, keys, token, exc)
                result = yield from self._without_cache(backend, keys, exc)
                return UNCACHED, result, None
            except StoreRefused as exc:  # it would not even take the entry's lock
                _warnings.refused(backend, keys, self.function_id, exc)
                stats.add(backend.alias, keys.stats, "computations")
                with tracing.computation(self.function_id) as traced:
                    traced.outcome = "refused"
                    result, _ = yield COMPUTE
                return UNCACHED, result, None
            if not recompute and (found.state == HIT or (found.state == STALE and token)):
                field = "hits" if found.state == HIT else "stale_hits"
                stats.add(backend.alias, keys.stats, field)
                refresh = None
                if found.fence and token:
                    refresh = (found.generation, (token, found.fence))
                return found.state, found.value, refresh
            if found.wait is None:
                if not recompute:
                    stats.add(backend.alias, keys.stats, "misses")
                if waited and found.fence:  # its holder gave up, died or was too slow
                    tracing.event("cache_tools.take_over", self.function_id)
                holder = token if found.fence else None  # none: compute without the lock
                state, result = yield from self._compute_and_store(backend, keys, holder, found)
                return state, result, None
            waited = True
            try:
                wait = min(found.wait or backend.max_wait, backend.max_wait)
                began = time.monotonic()
                yield from ask(Backend.wait, keys.lock, wait)
                if recording.active:
                    recording.wait("entry", keys.value, time.monotonic() - began)
            except BackendUnavailable as exc:
                result = yield from self._without_cache(backend, keys, exc)
                return UNCACHED, result, None
            shared = unstored.get().since(keys.value, waited_from)
            if not recompute and shared is not NOTHING:
                stats.add(backend.alias, keys.stats, "hits")
                return HIT, shared, None

    def _without_cache(self, backend: Backend, keys: EntryKeys, error: Exception) -> Steps[T]:
        _warnings.outage(backend, keys, error)
        stats.add(backend.alias, keys.stats, "computations")
        with tracing.computation(self.function_id) as traced:
            traced.outcome = "cache unavailable"
            result, _ = yield COMPUTE
        return result  # type: ignore[no-any-return]

    def _maybe_orphaned(
        self, backend: Backend, keys: EntryKeys, token: str | None, error: BackendUnavailable
    ) -> None:
        """A request that takes the entry's lock got no reply: the server may hold it."""
        if token and error.outcome_unknown:
            release_when_answering(backend, keys.lock, token, self.lock_timeout)

    def _compute_and_store(
        self, backend: Backend, keys: EntryKeys, token: str | None, fetched: Fetched
    ) -> Steps[tuple[str, T]]:
        with tracing.computation(self.function_id) as traced:
            state, result, traced.outcome = yield from self._computed_and_stored(
                backend, keys, token, fetched
            )
        return state, result

    def _computed_and_stored(
        self, backend: Backend, keys: EntryKeys, token: str | None, fetched: Fetched
    ) -> Steps[tuple[str, T, str]]:
        """The steps of :meth:`_compute_and_store`, and what became of the result."""
        stats.add(backend.alias, keys.stats, "computations")
        try:
            result, to_store = yield COMPUTE
        except BaseException:
            yield from self._release(backend, keys, token, wake_all=False)
            raise
        if transactions.wrote():
            # Computed by a transaction that has written: its caller's alone, until COMMIT
            # (and for ever if it rolls back). The waiters take over, with single flight.
            yield from self._release(backend, keys, token, wake_all=True)
            return MISS, result, "transaction"
        outcome = "not stored"
        if to_store is not NOT_STORED:
            outcome = yield from self._store(backend, keys, result, to_store, token, fetched)
        if outcome != "stored" and token:
            # Not storable (or refused): wake every waiter, and let callers compute without
            # waiting for each other a moment; waiters of this process take this result.
            storable = outcome == "unreachable"
            if not storable and self.share_unstored:
                unstored.get().publish(keys.value, result)  # before the waiters wake
            uncacheable = 0 if storable else UNCACHEABLE_SECONDS
            yield from self._release(backend, keys, token, wake_all=True, uncacheable=uncacheable)
        state = MISS if outcome in ("stored", "kept out", "not stored") else UNCACHED
        return state, result, outcome

    def _store(
        self,
        backend: Backend,
        keys: EntryKeys,
        result: T,
        to_store: Any,
        token: str | None,
        fetched: Fetched,
    ) -> Steps[str]:
        """Store, releasing the entry's lock; nothing is written if the function's generation
        moved on from the one ``fetched`` saw or, with a ``token``, if the entry was invalidated
        since its lock was taken. Returns ``"stored"`` when done (written, or skipped),
        ``"kept out"`` (a zero timeout), ``"refused"`` (not serialisable, or the server would not
        keep it) or ``"unreachable"``; in the last three the lock is still the caller's."""
        timeout = self.timeout(result) if callable(self.timeout) else self.timeout
        if timeout is not None and timeout <= 0:
            return "kept out"
        writes = [(keys, to_store, token)]
        if isinstance(to_store, AlsoStore):
            other = self.keys(to_store.argument_key, backend, to_store.scope, keys.tags)
            writes = [(other, to_store.value, None), (keys, to_store.own, token)]
        for entry, value, holder in writes:
            try:
                yield from ask(
                    Backend.store,
                    entry,
                    value,
                    timeout=timeout,
                    stale=self.stale,
                    generation=fetched.generation,
                    token=holder,
                    fence=fetched.fence if holder else None,
                )
            except StoreRefused as exc:
                _warnings.refused(backend, entry, self.function_id, exc)
                return "refused"
            except BackendUnavailable as exc:
                _warnings.outage(backend, entry, exc)
                return "unreachable"
            self._forget(backend, entry)
        return "stored"

    def _forget(self, backend: Backend, keys: EntryKeys) -> None:
        """Drop this process's copy of an entry it changed, without waiting for the server's
        invalidation (so that this process reads its own writes)."""
        copies = self._copies(backend)
        if copies is not None:
            copies.drop(keys.value)

    def _release(
        self,
        backend: Backend,
        keys: EntryKeys,
        token: str | None,
        wake_all: bool,
        uncacheable: float = 0,
    ) -> Steps[None]:
        """Release the entry's lock without storing: one waiter takes over, or all re-read.
        If the server cannot be told now, it is told as soon as it answers."""
        if not token:
            return
        try:
            yield from ask(Backend.release, keys.lock, token, wake_all, uncacheable)
        except (BackendUnavailable, StoreRefused):
            release_when_answering(backend, keys.lock, token, self.lock_timeout)

    def _refresh(
        self,
        backend: Backend,
        keys: EntryKeys,
        generation: int,
        held: tuple[str, int] | None,
    ) -> Steps[float | None]:
        """Refresh a stale entry; ``held`` is the entry's lock as ``(token, fence)`` when the
        caller already took it. If another caller is refreshing, returns how long that may
        take (the refresher then stays quiet for that entry)."""
        token, fence = held or (secrets.token_hex(16), 0)
        if held is None:
            try:
                attempt = yield from ask(
                    Backend.acquire, keys.lock, token, self.lock_timeout, False
                )
            except BackendUnavailable as exc:
                self._maybe_orphaned(backend, keys, token, exc)
                return None
            except StoreRefused:
                return self.lock_timeout  # full: stay quiet a while, serving stale
            if attempt.fence is None:
                return attempt.retry_in or self.lock_timeout
            fence = attempt.fence
            try:
                fresh = (yield from ask(Backend.read, keys)).state == HIT
            except BackendUnavailable:
                fresh = True  # give up this refresh; a later stale hit tries again
            if fresh:  # or refreshed by another caller while we took the lock
                yield from self._release(backend, keys, token, wake_all=False)
                return None
        started = Fetched(STALE, fence=fence, generation=generation)
        yield from self._compute_and_store(backend, keys, token, started)
        return None

    # Controls ----------------------------------------------------------------------------

    def contains(
        self, argument_key: str, scope: str | None = None, tags: tuple[str, ...] = ()
    ) -> bool:
        return self.backend.read(self.keys(argument_key, scope=scope, tags=tags)).state != MISS

    def invalidate(self, argument_key: str, scope: str | None = None) -> bool:
        """Drop the entry now and, inside a transaction, again when it commits: a reader
        may compute from the data as it was before and store it meanwhile."""
        backend = self.backend
        keys = self.keys(argument_key, backend, scope)
        if recording.active:
            recording.invalidation("entry", keys.value)
        transactions.repeat_at_commit(lambda: self._again(self._invalidate, backend, keys))
        return self._invalidate(backend, keys)

    def _invalidate(self, backend: Backend, keys: EntryKeys) -> bool:
        try:
            return backend.invalidate(keys)
        finally:
            self._forget(backend, keys)

    def _again(self, invalidation: Callable[..., Any], *args: Any) -> None:
        """An invalidation repeated at COMMIT; a failure is logged (the COMMIT went through)."""
        try:
            invalidation(*args)
        except BackendUnavailable as exc:
            logger.warning("could not invalidate %s again at COMMIT: %s", self.function_id, exc)

    async def ainvalidate(self, argument_key: str, scope: str | None = None) -> bool:
        backend = self.backend
        keys = self.keys(argument_key, backend, scope)
        try:
            return bool(await backend.asynchronous().invalidate(keys))
        finally:
            self._forget(backend, keys)

    def invalidate_scope(self, scope: str | None = None) -> int:
        """Make every entry of the function (or of one ``scope`` of it) unreachable, in O(1),
        now and, inside a transaction, again when it commits; returns the new generation (0
        when there was none, and so no entry)."""
        backend = self.backend
        key = backend.generation_key(self.function_id, scope)
        if recording.active:
            recording.invalidation("function", self.function_id + (f" {scope}" if scope else ""))
        transactions.repeat_at_commit(lambda: self._again(self._bump, backend, key))
        return self._bump(backend, key)

    def _bump(self, backend: Backend, key: ServerKey) -> int:
        try:
            return backend.bump_generation(key)
        finally:
            self._forget_generation(backend, key)

    async def ainvalidate_scope(self, scope: str | None = None) -> int:
        backend = self.backend
        key = backend.generation_key(self.function_id, scope)
        try:
            return int(await backend.asynchronous().bump_generation(key))
        finally:
            self._forget_generation(backend, key)

    def _forget_generation(self, backend: Backend, generation_key: str) -> None:
        copies = self._copies(backend)
        if copies is not None:
            copies.drop_generation(generation_key)

    def info(self) -> stats.CacheInfo:
        backend = self.backend
        return stats.read(backend.alias, backend.stats_key(self.function_id))

    async def ainfo(self) -> stats.CacheInfo:
        return await sync_to_async(self.info, thread_sensitive=False)()

    def clear_stats(self) -> None:
        backend = self.backend
        stats.clear(backend.alias, backend.stats_key(self.function_id))
