"""Scaling (issue 16): the cost of a cache_aside hit as values grow, as one function's distinct
keys grow, and over 1 000 functions, each against a raw ``cache.get`` doing the same in the same
run.

Goal: a hit over 10 000 keys of 1 000 functions costs within 1.05x of a single hot key (the
per-process key and signature caches must not thrash). Shown against the hit on one key, beside
what the same spread costs a raw get and the hit's own command (``MGET`` of the same keys, the
floor for any client), and as the microseconds the hit pays beyond that command. Medians of
per-round ratios over interleaved short rounds; the 1 000 functions' keys also in a random
order; a layout larger than those caches (16 384 calls) shows what thrashing costs.
"""

from __future__ import annotations

import itertools
import random
import statistics
import uuid
from typing import Any

from _common import interleaved, per_round, table
from django.core.cache import cache
from django_redis import get_redis_connection

from cache_tools import cache_aside

RUN = uuid.uuid4().hex[:8]
ROUNDS = 41
SPREAD_ROUNDS = 101  # one run of 41 could not tell 1.03 from 1.08


def cached_functions(count: int, value: str) -> list:
    """``count`` distinct cached functions (distinct dotted paths, so distinct keys)."""

    def make(index: int) -> object:
        def function(n: int) -> str:
            return value

        function.__qualname__ = function.__name__ = f"scaling_{RUN}_{index}"
        return cache_aside(timeout=600)(function)

    return [make(index) for index in range(count)]


def cycling(calls: list) -> object:
    """A callable that makes the next of ``calls`` each time (keys visited round robin)."""
    iterator = itertools.cycle(calls)
    return lambda: next(iterator)()


def compare(variants: dict[str, object], rounds: int = ROUNDS) -> dict[str, list[float]]:
    return interleaved(variants, rounds, 300)  # type: ignore[arg-type]


def ratio(samples: dict[str, list[float]], top: str, bottom: str) -> float:
    """The median over the rounds of ``top / bottom`` measured in the same round."""
    return statistics.median(per_round(samples, top, bottom))


def value_sizes() -> list[tuple[str, ...]]:
    rows = []
    for size in (100, 10_000, 100_000):
        value = "x" * size
        cache.set(f"bench:{RUN}:size:{size}", value, 600)
        (hot,) = cached_functions(1, value)
        hot(1)
        got = compare(
            {
                "raw": lambda s=size: cache.get(f"bench:{RUN}:size:{s}"),
                "hit": lambda f=hot: f(1),
            }
        )
        raw = statistics.median(got["raw"])
        rows.append((f"{size:,} B", f"{raw * 1e6:.0f}", f"{ratio(got, 'hit', 'raw'):.2f}"))
    return rows


def mget_of(call: tuple[Any, int]) -> tuple[str, str]:
    """The two keys a hit of ``call`` reads in its one ``MGET``: its entry and its function's
    generation."""
    function, n = call
    keys = function.flight.keys(function.argument_key((n,), {}))
    return str(keys.value), str(keys.generation)


def spread() -> list[tuple[str, ...]]:
    """Each layout with the 1-key baseline in a comparison of its own, so that its working set
    is its own (the per-process key caches hold 16 384 calls); the last layout is larger than
    that on purpose. Keys are visited round robin in the order they were written, and once in
    a random order (the same for every variant), where neither the client's objects nor the
    server's keys are read in the order they were made.

    The floor is what the spread costs the hit's own command, ``MGET`` of the same two keys per
    call sent by the alias's redis-py client (django-redis's, same pool), added to the hot hit:
    what any client reading those keys pays, as a multiple of the hot hit. "Beyond the floor"
    is what the hit pays on top of that, in microseconds."""
    value = "x" * 100
    (one,) = cached_functions(1, value)
    over_functions = [(f, n) for f in cached_functions(1000, value) for n in range(10)]
    shuffled = list(range(len(over_functions)))
    random.Random(16).shuffle(shuffled)
    layouts = {
        "10 000 keys, 1 function": ([(one, n) for n in range(1, 10_001)], None),
        "10 000 keys over 1 000 functions": (over_functions, None),
        "the same in a random order": (over_functions, shuffled),
        "25 000 keys over 2 500 functions (beyond the caches)": (
            [(f, n) for f in cached_functions(2500, value) for n in range(10)],
            None,
        ),
    }
    for n in range(25_000):
        cache.set(f"bench:{RUN}:spread:{n}", value, 600)
    client = get_redis_connection("default")
    hot_keys = mget_of((one, 0))
    rows = []
    for label, (pairs, order) in layouts.items():
        calls = [lambda f=f, n=n: f(n) for f, n in pairs]
        # Warm every entry, and this layout's keys in the process's caches: twice, since the
        # argument-key memo is emptied when full, which the previous layout's calls may make
        # it do halfway through the first pass (the rest would be computed while measured).
        for _ in range(2):
            for call in [lambda: one(0), *calls]:
                call()
        raw_calls = [lambda n=n: cache.get(f"bench:{RUN}:spread:{n}") for n in range(len(calls))]
        mgets = [lambda k=k: client.mget(k) for k in map(mget_of, pairs)]
        if order is not None:
            calls, raw_calls, mgets = ([c[i] for i in order] for c in (calls, raw_calls, mgets))
        # Every variant goes through the same cycling wrapper (one key or many), so that the
        # benchmark's own calls cost each the same.
        got = compare(
            {
                "hit 1 key": cycling([lambda: one(0)]),
                "raw 1 key": cycling([lambda: cache.get(f"bench:{RUN}:spread:0")]),
                "mget 1 key": cycling([lambda: client.mget(hot_keys)]),
                "hit": cycling(calls),
                "raw": cycling(raw_calls),
                "mget": cycling(mgets),
            },
            SPREAD_ROUNDS,
        )
        variants = ("hit", "hit 1 key", "mget", "mget 1 key")
        rounds = list(zip(*(got[v] for v in variants), strict=True))
        # The hot hit plus what the spread adds to the MGET alone: the best a hit can do.
        floor = [(hot + mget - hot_mget) / hot for _, hot, mget, hot_mget in rounds]
        beyond = [((hit - hot) - (mget - hot_mget)) * 1e6 for hit, hot, mget, hot_mget in rounds]
        rows.append(
            (
                label,
                f"{statistics.median(got['hit']) * 1e6:.0f}",
                f"{ratio(got, 'hit', 'raw'):.2f}",
                f"{ratio(got, 'hit', 'hit 1 key'):.3f}",
                f"{statistics.median(floor):.3f}",
                f"{statistics.median(beyond):+.1f}",
                f"{ratio(got, 'raw', 'raw 1 key'):.3f}",
            )
        )
    return rows


def main() -> None:
    table(
        "Hit by value size (x raw cache.get of the same value)",
        value_sizes(),
        ("value", "raw get us", "x raw get"),
    )
    table(
        "Hit by spread of keys (goal: <= 1.05x of 1 hot key; medians of per-round ratios)",
        spread(),
        (
            "layout",
            "hit us",
            "x raw get",
            "x hit on 1 key",
            "floor",
            "beyond the floor, us",
            "raw get: x on 1 key",
        ),
    )


if __name__ == "__main__":
    main()
