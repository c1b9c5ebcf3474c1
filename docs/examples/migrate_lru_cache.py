"""From functools.lru_cache: one copy per worker process, so an invalidation in one worker
leaves every other worker serving the old value."""

import functools
import multiprocessing

from django.core.cache import caches

from cache_tools import cache_aside

prices = caches["default"]  # stands for the database: every process sees the same rows
prices.set("migrate:price:1", 100)
worker = multiprocessing.get_context("fork")


def in_another_worker(function):
    """``function()`` as another uWSGI/gunicorn worker (a process of its own) sees it."""
    with worker.Pool(1) as pool:
        return pool.apply(function)


# Before: each process has its own copy.
@functools.lru_cache(maxsize=1024)
def price_before(product_id):
    return prices.get(f"migrate:price:{product_id}")


def read_before():
    return price_before(1)


assert price_before(1) == 100
with worker.Pool(1) as pool:  # a worker that has served the price once
    assert pool.apply(read_before) == 100
    prices.set("migrate:price:1", 120)
    price_before.cache_clear()  # clears this process's copy only
    assert price_before(1) == 120
    assert pool.apply(read_before) == 100  # the other worker still serves the old price


# After: one copy for every process, invalidated for all of them.
@cache_aside(timeout=300)
def price_after(product_id):
    return prices.get(f"migrate:price:{product_id}")


def read_after():
    return price_after(1)


prices.set("migrate:price:1", 100)
assert price_after(1) == 100
with worker.Pool(1) as pool:
    assert pool.apply(read_after) == 100
    prices.set("migrate:price:1", 120)
    price_after.invalidate(1)  # every process's next call computes again
    assert pool.apply(read_after) == 120
    assert price_after(1) == 120
