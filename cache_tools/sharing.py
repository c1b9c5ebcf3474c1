"""What the callers of one process share instead of each going to the server: a result
computed but not stored (the callers that waited for that very computation take it), and, per
event loop, one coroutine's read of a cold entry (the loop's others wait for it).

>>> unstored.get().publish(entry_key, result)
>>> with leading(entry_key):          # the others of this loop: await leader_of(entry_key).wait()
...     value = await compute()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from ._process import PerProcess

__all__ = ["NOTHING", "UNCACHEABLE_SECONDS", "Unstored", "leader_of", "leading", "unstored"]

#: Seconds during which, after a result could not be stored, callers of that entry compute
#: without waiting for each other (each would otherwise wait for the last, then compute too).
UNCACHEABLE_SECONDS = 1.0
NOTHING: Any = object()


class Unstored:
    """Results this process computed but could not store, kept a moment for the callers of
    this process that were waiting for that very computation (they take it instead of
    computing in turn): at most ``KEEP``, none older than ``UNCACHEABLE_SECONDS``. Callers
    share the object, as with ``local_copy="object"``."""

    KEEP = 16

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._results: dict[str, tuple[float, Any]] = {}

    def publish(self, entry_key: str, result: Any) -> None:
        now = time.monotonic()
        with self._guard:
            self._results.pop(entry_key, None)
            self._results[entry_key] = (now, result)
            for key, (when, _) in list(self._results.items()):
                if len(self._results) > self.KEEP or when < now - UNCACHEABLE_SECONDS:
                    del self._results[key]

    def since(self, entry_key: str, started: float) -> Any:
        """The result published for ``entry_key`` since ``started``, or ``NOTHING``."""
        found = self._results.get(entry_key)
        if found is None or found[0] < started:
            return NOTHING
        return found[1]


unstored = PerProcess(Unstored)

# Per event loop: the cold entries a coroutine of that loop is fetching or computing now.
_in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Event]] = (
    weakref.WeakKeyDictionary()
)


def leader_of(entry_key: str) -> asyncio.Event | None:
    """Set when the coroutine of the running loop that reads ``entry_key`` now is done; None
    when there is none."""
    return _in_flight.get(asyncio.get_running_loop(), {}).get(entry_key)


@contextlib.contextmanager
def leading(entry_key: str) -> Iterator[None]:
    """Be the running loop's coroutine that reads ``entry_key``, until the block ends."""
    in_flight = _in_flight.setdefault(asyncio.get_running_loop(), {})
    in_flight[entry_key] = asyncio.Event()
    try:
        yield
    finally:
        in_flight.pop(entry_key).set()
