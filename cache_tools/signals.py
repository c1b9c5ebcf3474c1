"""Django signals for monitoring systems other than the dashboard and Prometheus.

Each is sent as the event is counted, in the thread that caused it; receivers must be quick
(hand the event to a queue rather than make a network call). With no receiver connected, the
hit path pays one attribute test.

``sender`` is the cached function or view (the decorated object), so a receiver can listen to
one function only; ``function`` is its dotted path. Lock signals are sent with the lock's name
as ``sender`` (a string: filter on it inside the receiver)::

    from django.dispatch import receiver
    from cache_tools.signals import cache_miss
    from shop.prices import price_of

    @receiver(cache_miss, sender=price_of)
    def count_price_misses(sender, function, alias, **kwargs):
        METRICS["price misses"] += 1

===================  ========================================================
signal               sent when (besides ``sender``: ``function`` or ``name``, ``alias``)
===================  ========================================================
``cache_hit``        a call is answered from the cache (or another's result)
``cache_stale_hit``  a call is answered with a stale value while it refreshes
``cache_local_hit``  a call is answered from this process's copy (``local=``)
``cache_miss``       a call computes (the entry was missing or expired)
``computation``      the function runs (misses, refreshes, warm-ups, failures)
``cache_error``      the cache failed a call (outage, refused, unserialisable)
``lock_waited``      a lock was taken after waiting (also ``seconds``)
``lock_lost``        a held lock was found expired or taken over
===================  ========================================================
"""

from __future__ import annotations

import weakref
from typing import Any

from django.dispatch import Signal

__all__ = [
    "cache_error",
    "cache_hit",
    "cache_local_hit",
    "cache_miss",
    "cache_stale_hit",
    "computation",
    "lock_lost",
    "lock_waited",
]

#: Whether any receiver is connected to any of these signals (tested on every count; a
#: receiver collected without being disconnected leaves it set, which costs a little, not
#: correctness).
listening = False


class _Watched(Signal):
    """A signal that keeps :data:`listening` up to date as receivers come and go."""

    def connect(self, *args: Any, **kwargs: Any) -> None:
        super().connect(*args, **kwargs)
        _update()

    def disconnect(self, *args: Any, **kwargs: Any) -> bool:
        found = super().disconnect(*args, **kwargs)
        _update()
        return found


cache_hit = _Watched()
cache_stale_hit = _Watched()
cache_local_hit = _Watched()
cache_miss = _Watched()
computation = _Watched()
cache_error = _Watched()
lock_waited = _Watched()
lock_lost = _Watched()

_BY_FIELD = {
    "hits": cache_hit,
    "stale_hits": cache_stale_hit,
    "local_hits": cache_local_hit,
    "misses": cache_miss,
    "computations": computation,
    "errors": cache_error,
}
_ALL = (*_BY_FIELD.values(), lock_waited, lock_lost)


def _update() -> None:
    global listening
    listening = any(signal.receivers for signal in _ALL)


# Each function's decorated object, by dotted path: the sender of its signals.
_senders: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def name_sender(function_id: str, sender: Any) -> None:
    """Make ``sender`` (a cached function or view) the sender of ``function_id``'s signals."""
    _senders[function_id] = sender


def cache_event(alias: str, function_id: str | None, field: str) -> None:
    """Send the signal of a counted ``field`` of a function (``stats.add`` calls this)."""
    signal = _BY_FIELD.get(field)
    if signal is not None and signal.receivers and function_id is not None:
        sender = _senders.get(function_id, function_id)
        signal.send(sender=sender, function=function_id, alias=alias)


def lock_event(alias: str, name: str, waited: float | None, lost: bool) -> None:
    """Send ``lock_lost`` or, after a wait, ``lock_waited`` (``stats.lock_event`` calls this)."""
    if lost:
        lock_lost.send(sender=name, name=name, alias=alias)
    elif waited is not None:
        lock_waited.send(sender=name, name=name, alias=alias, seconds=waited)
