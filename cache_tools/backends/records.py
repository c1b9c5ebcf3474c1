"""What the backend contract passes around: keys as the server stores them, a lock's and an
entry's keys, and what reads and lock attempts found. See :mod:`.base` for the key layout.

>>> keys = backend.entry_keys("shop.price", "42")
>>> found = backend.read(keys)        # a Fetched
>>> found.state == HIT
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = [
    "HIT",
    "MISS",
    "STALE",
    "VERSION_MODULUS",
    "Attempt",
    "EntryKeys",
    "Fetched",
    "KeyMaker",
    "LockKeys",
    "LockState",
    "ScanReport",
    "ServerKey",
    "holder_of",
    "sum_versions",
]


class KeyMaker(Protocol):
    """What makes the keys of a lock's companions and of an entry's lock (an adapter)."""

    def companion_key(self, base: ServerKey, suffix: str) -> ServerKey: ...

    def entry_lock_keys(self, value: ServerKey) -> LockKeys: ...


class ServerKey(str):
    """A key as the cache server stores it; ``name`` is what Django's cache API is given."""

    name: str

    def __new__(cls, server_key: str, name: str) -> ServerKey:
        key = super().__new__(cls, server_key)
        key.name = name
        return key


class LockKeys:
    """The keys of one lock: ``lock`` and its companions, made from it when asked (the
    scripts name them from the lock's key themselves; a process keeps thousands of these).
    ``handover``: released to the waiter blocked longest, first come first served (locks);
    else every waiter is woken to look again (cache-aside entries)."""

    __slots__ = ("_backend", "handover", "lock")

    def __init__(self, backend: KeyMaker, lock: ServerKey, handover: bool = False) -> None:
        self._backend, self.lock, self.handover = backend, lock, handover

    def _companion(self, suffix: str) -> ServerKey:
        return self._backend.companion_key(self.lock, suffix)

    @property
    def signal(self) -> ServerKey:
        """The release signal list (and, for locks, a hand-over's ticket)."""
        return self._companion("#s")

    @property
    def fence(self) -> ServerKey:
        return self._companion("#f")

    @property
    def waiters(self) -> ServerKey:
        """The number of registered waiters (cache-aside entry locks)."""
        return self._companion("#w")

    @property
    def waiting(self) -> ServerKey:
        """The tokens seen waiting recently (locks; for dashboards)."""
        return self._companion("#q")

    @property
    def uncacheable(self) -> ServerKey:
        """Set a moment when a result could not be stored (cache-aside entry locks)."""
        return self._companion("#n")

    def all(self) -> list[ServerKey]:
        """Every key of the lock."""
        return [self.lock, self.signal, self.fence, self.waiters, self.waiting, self.uncacheable]


class EntryKeys:
    """The keys of one cache-aside entry. The lock's keys are made on each use from the
    value's (its name with ``:l:`` for ``:v:``) and not kept: a hit needs only ``value`` and
    ``generation``, and a process keeps thousands of these."""

    __slots__ = (
        "_backend",
        "generation",
        "generations",
        "packed_read",
        "read_check",
        "stats",
        "tags",
        "value",
    )

    def __init__(
        self,
        backend: KeyMaker,
        value: ServerKey,
        generation: ServerKey,
        stats: ServerKey,
        tags: tuple[str, ...] = (),
        tag_keys: tuple[ServerKey, ...] = (),
    ) -> None:
        self._backend = backend
        self.value, self.generation, self.stats = value, generation, stats
        #: The entry's tags, and every key whose change voids it: the function's generation,
        #: then the tags' versions (an entry is stored under their sum: :func:`sum_versions`).
        self.tags = tags
        self.generations = (generation, *tag_keys)
        #: The adapter's hit read of these keys in its wire form, and how it checks that a
        #: reply is this entry's, made on first use.
        self.packed_read: Any = None
        self.read_check: Any = None

    @property
    def lock(self) -> LockKeys:
        return self._backend.entry_lock_keys(self.value)


#: Versions are added modulo this (exact in Lua's doubles, and in Python's ints alike).
VERSION_MODULUS = 2**52


def sum_versions(versions: Sequence[Any]) -> int | None:
    """The generation an entry is stored under: its function's generation, plus the versions
    of its tags. Each only grows (one that is lost starts again at the clock, above every
    earlier value), so the sum moves whenever any of them does; None if one is missing.

    >>> sum_versions([b"17"]), sum_versions([b"17", b"5"]), sum_versions([b"17", None])
    (17, 22, None)
    """
    total = 0
    for version in versions:
        if version is None:
            return None
        total = (total + int(version)) % VERSION_MODULUS
    return total


#: The states of a cache-aside read.
HIT, STALE, MISS = "hit", "stale", "miss"


class Fetched(NamedTuple):
    """What a cache-aside read found.

    ``state`` is :data:`HIT`, :data:`STALE` or :data:`MISS`. ``fence`` is set when this caller
    now holds the entry's lock (it must compute or refresh); ``wait`` (seconds) is set when
    another caller holds it. ``generation`` is the function's generation seen by the read.
    """

    state: str
    value: Any = None
    fence: int | None = None
    wait: float | None = None
    generation: int = 0
    #: The stored bytes of ``value`` and until when (ms, 0: no limit) a copy of it may be
    #: served as fresh, where the backend can say (for per-process copies).
    payload: bytes | memoryview | None = None
    until: int = 0


class Attempt(NamedTuple):
    """One try at a lock: taken with ``fence``, or not (``fence`` None) and worth trying again
    in ``retry_in`` seconds (0: as soon as the caller likes)."""

    fence: int | None
    retry_in: float = 0.0

    @property
    def taken(self) -> bool:
        return self.fence is not None


class LockState(NamedTuple):
    """A lock as the server has it now, for dashboards: ``holder`` is ``host:pid`` of the
    process holding it, ``age`` seconds since it was taken and ``fence`` its fencing number,
    where the backend can say (None otherwise)."""

    held: bool
    holder: str | None = None
    age: float | None = None
    fence: int | None = None
    waiters: int | None = None


def holder_of(token: str | None) -> str | None:
    """``host:pid`` of a lock token (``host:pid:random``); None for none, or for a lock being
    handed to a waiter (not yet claimed)."""
    if token is None or token.startswith("~"):
        return None
    return token.rsplit(":", 1)[0]


@dataclass
class ScanReport:
    """What a pattern deletion found and did; ``largest_batch`` shows the memory bound held."""

    matched: int = 0
    deleted: int = 0
    batches: int = 0
    largest_batch: int = 0
