"""Which locks each thread or task of this process holds, and the tokens they hold them by.

The record is a cache of the server's word, never the truth: a handle asks the server before
it refuses a second acquisition as re-entry (:meth:`cache_tools.Lock.acquire`). Weak: a handle
dropped while held is collected (with a ``ResourceWarning``) instead of being kept alive here.

>>> ref = note_taken(handle)
>>> held_here()
[<Lock 'ct:lock:{reports}' held fence=1796000000000001>]
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import secrets
import socket
import threading
import weakref
from typing import Any, Protocol

from ._process import PerProcess

__all__ = ["Holder", "held_here", "new_token", "note_released", "note_taken", "owner_now"]


class Holder(Protocol):
    """A lock handle, as the record sees it."""

    @property
    def held(self) -> bool: ...


# The locks this thread or task took, innermost last, with the process that took each.
_held: contextvars.ContextVar[tuple[tuple[weakref.ref[Any], int], ...]] = contextvars.ContextVar(
    "cache_tools_held_locks", default=()
)


def note_taken(handle: Holder) -> weakref.ref[Any]:
    """Record ``handle`` as the innermost lock of this thread or task; a weak reference to it."""
    ref = weakref.ref(handle)
    kept = [(r, pid) for r, pid in _held.get() if (h := r()) is not None and h.held]
    _held.set((*kept, (ref, os.getpid())))
    return ref


def note_released(handle: Holder) -> None:
    _held.set(tuple(entry for entry in _held.get() if entry[0]() not in (None, handle)))


def held_here(pid: int | None = None) -> list[Any]:
    """The handles this thread or task holds, taken in this process (a forked child holds
    none), innermost last."""
    held = _held.get()
    if not held:
        return []
    pid = os.getpid() if pid is None else pid
    return [
        handle
        for ref, taken_in in held
        if taken_in == pid and (handle := ref()) is not None and handle.held
    ]


def owner_now() -> object:
    """Who takes a lock: the running asyncio task, else the thread. A task created inside a
    ``with lock(...)`` block sees the lock as ``current_lock()`` (contexts are copied) but may
    still wait for it like any other task."""
    loop = asyncio._get_running_loop()  # None outside a loop (get_running_loop would raise)
    task = asyncio.current_task(loop) if loop is not None else None
    return task if task is not None else threading.get_ident()


_HOST = socket.gethostname()
# Tokens: host, pid, a random part drawn once per process (again after a fork) and a counter;
# unique without a system call per lock.
_token_parts = PerProcess(
    lambda: (f"{_HOST}:{os.getpid()}:{secrets.token_hex(6)}", itertools.count())
)


def new_token() -> str:
    """A token no other acquisition anywhere has: ``host:pid:random<counter>``."""
    prefix, counter = _token_parts.get()
    return f"{prefix}{next(counter):x}"
