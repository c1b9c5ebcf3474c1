"""The demo project's cached and locked functions (one of each feature)."""

import asyncio
import functools
import os
import time

from django.core.cache import cache

from cache_tools import Call, aupdate, cache_aside, lock_decorator, update


@cache_aside(timeout=300, warm=lambda: [Call(n) for n in range(10)])
def compute(n):
    """A deterministic 'expensive' computation."""
    time.sleep(0.05)
    return {"n": n, "square": n * n}


@cache_aside(timeout=300, local=True, key_maker="local:{n}")
def compute_local(n):
    """``compute`` with a copy in every worker, dropped by Redis when the entry changes."""
    time.sleep(0.05)
    return {"n": n, "square": n * n}


@lock_decorator(key_maker=lambda request, part: "api_stats_calculations", timeout=30)
def api_stats_calculations(request, part):
    """One expensive statistics calculation at a time across all workers."""
    time.sleep(0.1)
    return {"part": part, "value": len(part)}


@lock_decorator(key_maker="thing:{name}", timeout=3)
def fetch_remote_thing(name):
    """Look a Thing up; if absent, fetch it (slowly) and create it, once across all workers."""
    from .models import Thing

    existing = Thing.objects.filter(name=name).first()
    if existing is not None:
        return existing, False
    cache.set(f"demo:holder:{name}", os.getpid(), 60)  # lets tests find (and kill) the holder
    time.sleep(0.5)  # the simulated remote fetch
    update("demo:things-fetches", lambda fetches: (fetches or 0) + 1, timeout=None)
    return Thing.objects.create(name=name, result=f"remote data for {name}"), True


@cache_aside(timeout=300, key_maker="shared:{n}")
async def shared_report(n):
    """One computation per key, whether sync workers (uWSGI, through async_to_sync) or async
    workers (an ASGI server) ask first."""
    await asyncio.sleep(0.2)
    await aupdate(f"demo:shared-computations:{n}", lambda count: (count or 0) + 1, timeout=None)
    return {"n": n, "computed_by": os.getpid()}


def computations_of(key):
    return cache.get(f"demo:slow-computations:{key}", 0)


def _slow_computation(key):
    time.sleep(0.5)  # a slow query
    update(f"demo:slow-computations:{key}", lambda n: (n or 0) + 1, timeout=600)
    return {"key": key, "computed_by": os.getpid()}


@cache_aside(timeout=300)
def slow_report(key):
    """The slow computation, cached with cache_aside: single flight across every worker."""
    return _slow_computation(key)


@functools.lru_cache(maxsize=1024)
def naive_report(key):
    """What the seeds warn about: a per-process memo over cache.get/set, with no single
    flight; each worker's threads compute while the entry is cold."""
    value = cache.get(f"demo:naive:{key}")
    if value is None:
        value = _slow_computation(key)
        cache.set(f"demo:naive:{key}", value, 300)
    return value
