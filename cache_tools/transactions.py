"""What waits for a database transaction to end: lock releases held to COMMIT, invalidations
repeated at COMMIT, and the rule that a value computed by a transaction that has written is not
shared.

Django runs ``transaction.on_commit`` callbacks after the outermost ``atomic()`` block commits,
drops them at ROLLBACK, and drops those registered inside a savepoint that rolls back. A
callback registered here is kept at the outermost level (a savepoint's rollback keeps it), so
that it also tells when the transaction ended without a commit: it leaves the connection's list
of callbacks either way, run or dropped. :meth:`TransactionEnd.ended` looks for it there, from
any thread (the lock watchdog asks every 50 ms).

Django's ``TestCase`` wraps each test in atomic blocks of its own, which stand for no
transaction of the application's (code outside ``atomic()`` commits at once in production):
they are looked through. Inside one, the application's own outermost block stands for its
transaction, which ends when that block exits.

>>> end = at_end(release, using="default")   # None outside a transaction: do it now
>>> end.ended()                              # False until COMMIT (release ran) or ROLLBACK
>>> repeat_at_commit(lambda: price.invalidate(1))
>>> wrote()                                  # this thread's transactions have written
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

__all__ = [
    "TransactionEnd",
    "at_end",
    "collect_at_commit",
    "collected",
    "in_transaction",
    "repeat_at_commit",
    "watch_open_connections",
    "wrote",
]

logger = logging.getLogger("cache_tools.transactions")


def _connection(using: str | None) -> BaseDatabaseWrapper | None:
    """This thread's connection ``using``, if it has made it (none: no transaction either;
    making one here would import its backend in the middle of a cache call)."""
    alias = using or DEFAULT_DB_ALIAS
    for connection in connections.all(initialized_only=True):
        if connection.alias == alias:
            return connection
    return None


def _transaction(connection: BaseDatabaseWrapper | None) -> tuple[Any, bool] | None:
    """The application's outermost open atomic block on ``connection``, and whether it is the
    database's transaction (False inside a ``TestCase``'s blocks); None outside one."""
    if connection is None or not connection.in_atomic_block:
        return None
    for depth, block in enumerate(connection.atomic_blocks):
        if not getattr(block, "_from_testcase", False):
            return block, depth == 0
    return None


def in_transaction(using: str | None = None) -> bool:
    """Whether this thread's connection ``using`` is inside the application's ``atomic()``."""
    return _transaction(_connection(using)) is not None


def _kept_to_the_end(connection: BaseDatabaseWrapper, callback: Callable[[], None]) -> None:
    """``transaction.on_commit(callback, robust=True)`` as if called outside every savepoint:
    a savepoint's rollback does not drop it, the transaction's end does."""
    # (savepoint ids, callback, robust): Django 4.2's entry; its stubs know only the first two.
    connection.run_on_commit.append((set(), callback, True))  # type: ignore[arg-type]


def _pending(connection: BaseDatabaseWrapper, callback: object) -> bool:
    return any(entry[1] is callback for entry in list(connection.run_on_commit))


class TransactionEnd:
    """``action`` run once when a transaction ends: at once after COMMIT (in the committing
    thread, by Django), or by whoever sees it ended otherwise (:meth:`ended`, :meth:`run`)."""

    __slots__ = ("_done", "_guard", "action", "block", "by_commit", "connection")

    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        action: Callable[[], None],
        block: Any,
        by_commit: bool,
    ) -> None:
        self.connection, self.action = connection, action
        self.block, self.by_commit = block, by_commit
        self._guard = threading.Lock()
        self._done = False

    def __call__(self) -> None:  # Django, after COMMIT
        self.run()

    def ended(self) -> bool:
        """Whether the transaction is over: this callback was run, or dropped (ROLLBACK, a
        closed connection); inside a ``TestCase``, its block exited. Safe from another thread
        (reads of lists)."""
        if self._done:
            return True
        if self.by_commit:
            return not _pending(self.connection, self)
        return not any(block is self.block for block in list(self.connection.atomic_blocks))

    def run(self) -> bool:
        """Run the action unless it ran already; True if this call ran it."""
        with self._guard:
            if self._done:
                return False
            self._done = True
        try:
            self.action()
        except Exception:
            logger.exception("could not finish %r at the end of a transaction", self.action)
        return True

    def cancel(self) -> bool:
        """Never run the action (it is done otherwise); False if it ran already."""
        with self._guard:
            if self._done:
                return False
            self._done = True
            return True


def at_end(action: Callable[[], None], using: str | None = None) -> TransactionEnd | None:
    """Run ``action`` when the transaction of this thread's connection ``using`` ends (see
    :class:`TransactionEnd`); None, and nothing done, outside a transaction."""
    connection = _connection(using)
    found = _transaction(connection)
    if connection is None or found is None:
        return None
    end = TransactionEnd(connection, action, *found)
    _kept_to_the_end(connection, end)
    return end


def repeat_at_commit(action: Callable[[], None]) -> None:
    """Run ``action`` again after every transaction this thread has open commits (on each
    database alias): an invalidation made before COMMIT can be undone by a reader that
    computes from the data as it was and stores it before the COMMIT."""
    for connection in connections.all(initialized_only=True):
        if _transaction(connection) is not None:
            _kept_to_the_end(connection, action)


class _Collected:
    """What a transaction's writes void, flushed once when it commits (dropped at ROLLBACK)."""

    __slots__ = ("block", "flush", "items")

    def __init__(self, block: Any, flush: Callable[[set[Any], Any], None]) -> None:
        self.block, self.flush = block, flush
        self.items: dict[Any, set[Any]] = {}

    def __call__(self) -> None:  # Django, after COMMIT
        for target, items in self.items.items():
            try:
                self.flush(items, target)
            except Exception:
                logger.exception("could not invalidate %s after COMMIT", sorted(items))

    def open(self, connection: BaseDatabaseWrapper) -> bool:
        return _pending(connection, self) and any(
            block is self.block for block in connection.atomic_blocks
        )


def collect_at_commit(
    using: str, flush: Callable[[set[Any], Any], None], items: set[Any], target: Any
) -> bool:
    """Add ``items`` to what ``flush(items, target)`` is called with, once per ``target``,
    after the transaction of this thread's connection ``using`` commits (nothing at ROLLBACK).
    False, and nothing kept, outside a transaction."""
    connection = _connection(using)
    found = _transaction(connection)
    if connection is None or found is None:
        return False
    batch = getattr(connection, "cache_tools_collected", None)
    if batch is None or batch.flush is not flush or not batch.open(connection):
        batch = connection.cache_tools_collected = _Collected(found[0], flush)  # type: ignore[attr-defined]
        _kept_to_the_end(connection, batch)
        batches = _collecting.batches
        batches[:] = [(c, kept) for c, kept in batches if kept.open(c)]  # ended ones go
        batches.append((connection, batch))
    batch.items.setdefault(target, set()).update(items)
    return True


class _Collecting(threading.local):
    def __init__(self) -> None:
        self.batches: list[tuple[BaseDatabaseWrapper, _Collected]] = []


_collecting = _Collecting()


def collected(items: tuple[Any, ...]) -> bool:
    """Whether a transaction this thread has open collected any of ``items`` for its COMMIT
    (its own writes void them: a cached value would not show them)."""
    batches = _collecting.batches
    if not batches:
        return False
    batches[:] = [(c, batch) for c, batch in batches if batch.open(c)]
    return any(not kept.isdisjoint(items) for _, batch in batches for kept in batch.items.values())


# Writes ------------------------------------------------------------------------------------

# Statements that change no data (everything else counts as a write, to be safe).
_READS = ("SELECT", "SAVEPOINT", "RELEASE", "ROLLBACK", "SET", "SHOW", "EXPLAIN", "PRAGMA")


class _Wrote:
    """The mark of a transaction that has written: a callback that does nothing, whose
    presence among the connection's callbacks says the transaction is still open."""

    __slots__ = ("block",)

    def __init__(self, block: Any) -> None:
        self.block = block

    def __call__(self) -> None:
        pass

    def open(self, connection: BaseDatabaseWrapper) -> bool:
        return _pending(connection, self) and any(
            block is self.block for block in connection.atomic_blocks
        )


def _is_write(sql: Any) -> bool:
    start = str(sql).lstrip()[:9].upper()
    return not start.startswith(_READS)


def _note_writes(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """An execute wrapper: marks the transaction of the connection as having written."""
    connection = context["connection"]
    if connection.in_atomic_block and _is_write(sql):
        mark = getattr(connection, "cache_tools_wrote", None)
        if mark is None or not mark.open(connection):
            found = _transaction(connection)
            if found is not None:
                mark = connection.cache_tools_wrote = _Wrote(found[0])
                _kept_to_the_end(connection, mark)
    return execute(sql, params, many, context)


def _watch(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if _note_writes not in connection.execute_wrappers:
        connection.execute_wrappers.append(_note_writes)


connection_created.connect(_watch, dispatch_uid="cache_tools.transactions")


def watch_open_connections() -> None:
    """Watch the writes of connections this thread made before cache_tools was loaded (new
    ones are watched as they are made)."""
    for connection in connections.all(initialized_only=True):
        _watch(None, connection)


def wrote() -> bool:
    """Whether a transaction this thread has open (on any database alias) has written: a
    value computed now may rest on data no other process sees, and may never see (ROLLBACK)."""
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            mark = getattr(connection, "cache_tools_wrote", None)
            if mark is not None and mark.open(connection):
                return True
    return False
