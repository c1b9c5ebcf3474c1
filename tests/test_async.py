"""Native async on a real Redis: single flight, locks, update and the controls for coroutine
functions, sharing keys and scripts with the sync API, never blocking the event loop."""

import asyncio
import gc
import time
import warnings

import pytest
import redis
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from cache_tools import (
    CacheInfo,
    LockError,
    LockTimeout,
    aupdate,
    cache_aside,
    current_lock,
    lock,
    lock_decorator,
    update,
)
from cache_tools.testing.contract import run_processes


def run(coroutine_function, *args):
    return asyncio.run(coroutine_function(*args))


def test_async_cache_aside_and_its_controls(unique):
    calls = []

    @cache_aside(timeout=60, key_maker=lambda x: (unique, x))
    async def double(x):
        calls.append(x)
        await asyncio.sleep(0)
        return 2 * x

    assert iscoroutinefunction(double)

    async def scenario():
        double.cache_clear_stats()
        assert [await double(1), await double(1), await double(2)] == [2, 2, 4]
        assert await double.ainvalidate(1) is True
        assert await double(1) == 2
        assert await double.arefresh(2) == 4
        await double.ainvalidate_all()
        assert await double(2) == 4
        return await double.acache_info()

    info = run(scenario)
    assert calls == [1, 2, 1, 2, 2]
    assert info == CacheInfo(hits=1, misses=4, stale_hits=0, computations=5, errors=0)
    assert double.is_cached(2) and double.invalidate(2) and not double.is_cached(2)  # sync too
    assert double.refresh(3) == 6 and double.cache_info().computations == 6


class Shop:
    def __init__(self, pk):
        self.pk = pk

    def __cache_key__(self):
        return self.pk

    @cache_aside(timeout=60)
    async def price(self, item):
        return f"{self.pk}:{item}:{time.monotonic()}"


def test_cached_async_methods(unique):
    async def scenario():
        shop = Shop(unique)
        first = await shop.price("tea")
        assert await Shop(unique).price("tea") == first
        assert await shop.price.ainvalidate("tea") is True
        return first, await shop.price("tea")

    first, second = run(scenario)
    assert first != second


@cache_aside(timeout=60, key_maker="herd:{name}")
async def slow_cold(name, ticked):
    raw = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    await raw.incr(f"{settings.TEST_PREFIX}:raw:{name}:computations")
    await raw.aclose()
    if ticked is not None:
        # Finish only once the loop has kept running while every other coroutine waits: a
        # waiter that blocked the loop would stop the ticker, and this would time out.
        await asyncio.wait_for(ticked.wait(), 10)
    else:
        await asyncio.sleep(0.2)
    return f"value of {name}"


def herd_in_a_process(index, barrier, name):
    async def scenario():
        ticked, lags = asyncio.Event(), []

        async def ticker():
            for tick in range(40):
                started = time.monotonic()
                await asyncio.sleep(0.005)
                lags.append(time.monotonic() - started - 0.005)
                if tick == 20:
                    ticked.set()

        ticking = asyncio.create_task(ticker())
        results = await asyncio.gather(
            *(slow_cold(name, ticked if index == 0 else None) for _ in range(50))
        )
        await ticking
        return results, sorted(lags)

    barrier.wait()
    return asyncio.run(scenario())


def test_four_processes_of_fifty_coroutines_compute_a_cold_key_once(unique):
    outcomes = run_processes(4, herd_in_a_process, unique)
    assert all(results == [f"value of {unique}"] * 50 for results, _ in outcomes)
    computations = redis.Redis.from_url(settings.REDIS_URL).get(
        f"{settings.TEST_PREFIX}:raw:{unique}:computations"
    )
    assert int(computations) == 1
    lags = sorted(lag for _, per_process in outcomes for lag in per_process)
    print(
        f"loop lag while 4 x 50 coroutines wait: median {lags[len(lags) // 2] * 1000:.1f} ms, "
        f"max {lags[-1] * 1000:.1f} ms"
    )


def test_sync_and_async_callers_share_one_flight(unique):
    """One key, computed by whichever caller comes first, sync or async."""

    @cache_aside(timeout=60, key_maker=lambda: unique)
    async def shared():
        shared.calls += 1
        await asyncio.sleep(0.1)
        return "once"

    shared.calls = 0

    async def async_callers():
        return await asyncio.gather(*(shared() for _ in range(10)))

    import threading

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(async_to_sync(shared)())) for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    results += run(async_callers)
    for thread in threads:
        thread.join()
    assert results == ["once"] * 15 and shared.calls == 1


def test_async_locks(unique):
    order = []

    @lock_decorator(key_maker=lambda n: unique, timeout=5)
    async def guarded(n):
        order.append(("in", n, current_lock().fence))
        await asyncio.sleep(0.02)
        order.append(("out", n))
        return n

    async def scenario():
        results = await asyncio.gather(*(guarded(n) for n in range(5)))
        async with lock(unique, timeout=5) as handle:
            assert current_lock() is handle

            async def other_task():
                return current_lock()

            assert await asyncio.create_task(other_task()) is handle  # tasks copy the context

            async def contender():
                async with lock(unique, timeout=5, blocking_timeout=0.1):
                    pass

            with pytest.raises(LockTimeout):  # another task waits like anyone else
                await asyncio.create_task(contender())
            with pytest.raises(LockError, match="already held by this thread or task"):
                async with lock(unique, timeout=5):  # re-entry in the same task
                    pass
        assert current_lock() is None
        handle = lock(unique, timeout=5)
        assert await handle.aacquire(blocking_timeout=1)
        await handle.arelease()
        return results

    assert run(scenario) == list(range(5))
    inside = [entry for entry in order if entry[0] == "in"]
    assert all(order[2 * i][0] == "in" and order[2 * i + 1][0] == "out" for i in range(5))
    fences = [entry[2] for entry in inside]
    assert fences == sorted(fences) and len(set(fences)) == 5


def test_the_watchdog_renews_async_held_locks(unique):
    async def scenario():
        async with lock(unique, timeout=0.3) as handle:
            await asyncio.sleep(1.0)  # three TTLs
            assert not handle.lost
            return await asyncio.to_thread(handle.locked)

    assert run(scenario) is True


def add_many(index, barrier, key):
    async def scenario():
        await asyncio.gather(
            *(aupdate(key, lambda old: (old or 0) + 1, timeout=60) for _ in range(50))
        )

    barrier.wait()
    asyncio.run(scenario())


def test_aupdate_loses_nothing(unique):
    run_processes(4, add_many, unique)
    assert caches["default"].get(unique) == 200
    assert update(unique, lambda old: old + 1) == 201  # the same key as the sync API


def test_an_outage_computes_without_the_cache(private_redis, down_alias, unique):
    @cache_aside(timeout=60, cache=down_alias, key_maker=lambda x: (unique, x))
    async def double(x):
        return 2 * x

    async def scenario():
        assert await double(1) == 2
        private_redis.pause()
        try:
            started = time.monotonic()
            assert await double(2) == 4
            return time.monotonic() - started
        finally:
            private_redis.resume()

    assert run(scenario) < 3  # bounded by the alias's own socket timeout (0.3 s)


def test_each_loop_closes_its_connections(unique):
    """asyncio.run and asgiref make and end loops; their pools must not outlive them."""
    client = redis.Redis.from_url(settings.REDIS_URL)

    @cache_aside(timeout=60, key_maker=lambda i: (unique, i))
    async def value(i):
        return i

    run(value, 0)
    before = len(client.client_list())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for i in range(20):
            run(value, i)
            async_to_sync(value)(i)
        gc.collect()
    assert len(client.client_list()) <= before + 2


def test_polling_backends_run_in_threads(memcached_url, unique):
    alias = {
        "mc": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": memcached_url,
            "KEY_PREFIX": settings.TEST_PREFIX,
        }
    }
    with override_settings(CACHES={**settings.CACHES, **alias}):
        calls = []

        @cache_aside(timeout=60, cache="mc", key_maker=lambda: unique)
        async def slow():
            calls.append(1)
            await asyncio.sleep(0.1)
            return "v"

        async def scenario():
            results = await asyncio.gather(*(slow() for _ in range(10)))
            async with lock(unique, cache="mc") as handle:
                assert handle.fence
            return results

        assert run(scenario) == ["v"] * 10 and calls == [1]
