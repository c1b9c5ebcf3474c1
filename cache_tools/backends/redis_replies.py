"""What the Redis adapter's replies say: an entry read, a fetch, a lock's keys read together.
Pure functions of the bytes the server sent.

>>> parse_entry([b"ct3|1a2b3c4d|17|0|0|<pickle>", b"17"], codec).state
'hit'
"""

from __future__ import annotations

import time
from typing import Any

from .records import HIT, MISS, STALE, Fetched, LockState, holder_of, sum_versions
from .redis_clients import Codec

__all__ = ["fetched", "lock_state", "parse_entry"]


def parse_entry(reply: list[Any], codec: Codec) -> Fetched:
    """What an entry read together with its generation (and its tags' versions) says:
    ``reply`` is ``[envelope, generation, version, ...]``. An envelope is
    ``ct3|<key tag>|<generation>|<stale after>|<expires at>|<payload>`` (ms on the server's
    clock, 0 for never); hosts are assumed to keep their clocks in sync."""
    envelope, generation = reply[0], reply[1]
    if len(reply) > 2:  # tagged: stored under the sum (aside_fetch.lua adds the same)
        total = sum_versions(reply[1:])
        generation = None if total is None else b"%d" % total
    if generation is None or envelope is None or not envelope.startswith(b"ct3|"):
        return Fetched(MISS)
    _, _, entry_generation, stale_after, expires_at, payload = _fields(envelope)
    if entry_generation != generation:
        return Fetched(MISS)
    fresh = stale_after == b"0" or time.time() * 1000 < int(stale_after)
    # Positional: this is the hit path (state, value, fence, wait, generation, payload, until).
    return Fetched(
        HIT if fresh else STALE,
        codec.decode(payload),
        None,
        None,
        int(generation),
        payload,
        _until(int(stale_after), int(expires_at)),
    )


#: Longer than any envelope's head (``ct3|`` and four fields of at most 20 digits).
_HEAD = 96


def _fields(envelope: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes, memoryview]:
    """An envelope's fields, the payload as a view of the envelope: a large value is not
    copied out of the reply before it is decoded (``split`` would copy it)."""
    head = envelope[:_HEAD].split(b"|", 5)
    start = len(head[0]) + len(head[1]) + len(head[2]) + len(head[3]) + len(head[4]) + 5
    return head[0], head[1], head[2], head[3], head[4], memoryview(envelope)[start:]


def lock_state(replies: list[Any], seconds: int, micros: int) -> LockState:
    """What a lock's keys, read together (:meth:`RedisBackend.lock_states`), say of it."""
    token, ticket, fence, registered, waiting = replies
    if token is None or (ticket is not None and token == b"~" + ticket):
        return LockState(False, waiters=0)  # free, or handed over with nobody to take it
    now_ms = seconds * 1000 + micros // 1000
    # Registrations can outlive waiters that gave up; a waiter is seen until it stops asking.
    waiters = int(registered or 0) + sum(1 for _, until in waiting if until > now_ms)
    # A fence is at least the server clock (µs) when it was taken: see _common.lua.
    age = None if fence is None else max(0.0, seconds + micros / 1e6 - int(fence) / 1e6)
    fence_number = None if fence is None else int(fence)
    return LockState(True, holder_of(token.decode()), age, fence_number, waiters)


def _until(stale_after: int, expires_at: int) -> int:
    """Until when (ms) a copy of the entry may be served as fresh: 0 for no limit."""
    if stale_after and expires_at:
        return min(stale_after, expires_at)
    return stale_after or expires_at


def fetched(reply: list[Any], codec: Codec) -> Fetched:
    """What ``aside_fetch.lua`` replied: ``[state, envelope, number, generation]``."""
    state, envelope, number, generation = reply
    generation = int(generation)
    if state == -1:
        return Fetched(MISS, wait=max(number, 0) / 1000, generation=generation)
    if state == -2:  # not storable lately: compute without the lock
        return Fetched(MISS, generation=generation)
    fence = int(number) or None
    if state == 0:
        return Fetched(MISS, fence=fence, generation=generation)
    value = codec.decode(_fields(envelope)[5])
    kind = HIT if state == 1 else STALE
    return Fetched(kind, value=value, fence=fence, generation=generation)
