"""Async benchmark: hit cost against a raw ``redis.asyncio`` GET of the same pickled value
(on a client with the alias's own settings: its socket timeouts make redis-py wrap each read
in a timeout, which a bare ``Redis.from_url()`` does not),
the event loop's lag during a 1000-coroutine herd, and async lock hand-off.

Goals (issue 13): an async hit <= 1.10x a raw async GET measured in the same run; the loop
never blocked while coroutines wait (lag p99 reported); async hand-off p50 <= 2 ms.
"""

from __future__ import annotations

import asyncio
import pickle
import random
import statistics
import time
import uuid

import redis.asyncio
from _common import per_round, percentile, table

from cache_tools import cache_aside, lock
from cache_tools.backends import get_backend

VALUE = {"name": "profile", "items": list(range(20))}
HERD = 1000
HANDOFFS = 60


@cache_aside(timeout=600, key_maker="async-hit")
async def aside_hit():
    return VALUE


@cache_aside(timeout=600, key_maker="async-herd:{tag}")
async def herd_member(tag):
    await asyncio.sleep(0.2)
    return VALUE


async def per_call(function, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await function()
    return (time.perf_counter() - started) / calls


async def interleaved(variants, rounds: int = 41, calls: int = 200) -> dict[str, list[float]]:
    """As ``_common.interleaved``, for coroutine functions: short rounds, the variants in a new
    order each round, so that drift on a shared machine hits both alike."""
    for function in variants.values():
        await per_call(function, calls)  # warm
    samples: dict[str, list[float]] = {label: [] for label in variants}
    order = list(variants)
    shuffle = random.Random(13).shuffle
    for _ in range(rounds):
        shuffle(order)
        for label in order:
            samples[label].append(await per_call(variants[label], calls))
    return samples


async def hits() -> list[tuple[str, ...]]:
    # The baseline runs on a redis.asyncio client with the alias's own connection settings
    # (host, socket timeouts): a fair "raw GET" in a project configured like this one.
    client = redis.asyncio.Redis(
        connection_pool=get_backend().asynchronous().client.connection_pool
    )
    await client.set("bench:async:value", pickle.dumps(VALUE))

    async def raw_get():
        return pickle.loads(await client.get("bench:async:value"))

    samples = await interleaved({"raw": raw_get, "ours": aside_hit})
    ratios = per_round(samples, "ours", "raw")
    return [
        (
            "raw redis.asyncio GET + unpickle",
            f"{statistics.median(samples['raw']) * 1e6:.0f}",
            "1.00",
            "-",
        ),
        (
            "async cache_aside hit",
            f"{statistics.median(samples['ours']) * 1e6:.0f}",
            f"{statistics.median(ratios):.2f}",
            f"{min(ratios):.2f}-{max(ratios):.2f}",
        ),
    ]


async def herd() -> tuple[float, float, float]:
    """1000 coroutines on one cold key while a ticker measures the loop's lag."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker():
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - started - 0.001)

    ticking = asyncio.create_task(ticker())
    tag = uuid.uuid4().hex
    started = time.perf_counter()
    await asyncio.gather(*(herd_member(tag) for _ in range(HERD)))
    total = time.perf_counter() - started
    done.set()
    await ticking
    return total, percentile(lags, 0.5), percentile(lags, 0.99)


async def handoff() -> list[float]:
    name = f"bench:async-handoff:{uuid.uuid4().hex}"
    latencies = []
    for _ in range(HANDOFFS):
        holder = lock(name, timeout=10)
        await holder.aacquire()
        entered = asyncio.get_running_loop().create_future()

        async def waiter(entered=entered):
            async with lock(name, timeout=10):
                entered.set_result(time.perf_counter())

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.03)  # let the waiter block (pacing, not synchronisation)
        released = time.perf_counter()
        await holder.arelease()
        latencies.append(await entered - released)
        await task
    return latencies


async def main() -> None:
    table(
        "Async hit (medians of per-round ratios, 41 interleaved rounds of 200 calls)",
        await hits(),
        ("what", "us/op", "x raw GET", "range"),
    )
    total, lag_p50, lag_p99 = await herd()
    table(
        f"Herd: {HERD} coroutines on one cold key (200 ms computation)",
        [
            (
                "async cache_aside",
                f"{total * 1000:.0f}",
                f"{lag_p50 * 1000:.2f}",
                f"{lag_p99 * 1000:.2f}",
            )
        ],
        ("what", "total ms", "loop lag p50 ms", "loop lag p99 ms"),
    )
    latencies = await handoff()
    table(
        f"Async lock hand-off, {HANDOFFS} releases (another task waiting)",
        [
            (
                "async with lock()",
                f"{percentile(latencies, 0.5) * 1000:.2f}",
                f"{percentile(latencies, 0.99) * 1000:.2f}",
            )
        ],
        ("what", "p50 ms", "p99 ms"),
    )


if __name__ == "__main__":
    asyncio.run(main())
