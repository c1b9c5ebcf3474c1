"""What one request (or any block of code) did with the cache: each cached call, each wait and
each invalidation, with times. The django-debug-toolbar panel records its request with it;
tests can too.

With nothing recording, the hit path pays one module attribute test (``active``).

>>> with recording() as seen:
...     price_of(7)
>>> seen.calls
[Call(function='shop.prices.price_of', key='…', state='hit', seconds=0.0001)]
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Call", "Invalidation", "Recording", "Wait", "active", "recording"]

#: How many recordings are open in this process (any thread or task): 0 on the hit path of a
#: process that records nothing.
active = 0
_guard = threading.Lock()


class Call(NamedTuple):
    """A call of a cached function, view or fragment: ``state`` is ``hit``, ``local`` (this
    process's copy), ``stale``, ``miss`` (computed and stored) or ``uncached`` (computed, not
    stored)."""

    function: str
    key: str
    state: str
    seconds: float


class Wait(NamedTuple):
    """Time spent waiting: for a lock (``kind="lock"``, its ``fence`` once taken) or for
    another caller's computation of an entry (``kind="entry"``)."""

    kind: str
    name: str
    seconds: float
    fence: int | None


class Invalidation(NamedTuple):
    """An invalidation: of an ``entry``, a ``function`` (all its entries, or a view's path),
    or ``tags``."""

    kind: str
    what: str


@dataclass
class Recording:
    calls: list[Call] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    invalidations: list[Invalidation] = field(default_factory=list)
    #: Set by a hit served from this process's copy, read by the call that made it.
    local: bool = False


_current: ContextVar[Recording | None] = ContextVar("cache_tools_recording", default=None)


@contextlib.contextmanager
def recording() -> Iterator[Recording]:
    """Record what the code run inside the block does with the cache (its thread, or its
    task and the tasks it starts)."""
    global active
    seen = Recording()
    token = _current.set(seen)
    with _guard:
        active += 1
    try:
        yield seen
    finally:
        with _guard:
            active -= 1
        _current.reset(token)


def current() -> Recording | None:
    """The recording of this thread or task, if one is open."""
    return _current.get()


def call(function_id: str, key: str, state: str, seconds: float) -> None:
    seen = _current.get()
    if seen is not None:
        if seen.local:
            state, seen.local = "local", False
        seen.calls.append(Call(function_id, key, state, seconds))


def local_hit() -> None:
    seen = _current.get()
    if seen is not None:
        seen.local = True


def wait(kind: str, name: str, seconds: float, fence: int | None = None) -> None:
    seen = _current.get()
    if seen is not None:
        seen.waits.append(Wait(kind, name, seconds, fence))


def invalidation(kind: str, what: str) -> None:
    seen = _current.get()
    if seen is not None:
        seen.invalidations.append(Invalidation(kind, what))
