"""A cache server that refuses or hangs: locks fail closed (or run, when asked), cache-aside
keeps returning results, and both recover without a restart."""

import logging
import time
from collections.abc import Callable

import django_redis.cache
import pytest
import redis
from django.conf import settings
from django.test import override_settings

from cache_tools import LockError, LockUnavailable, cache_aside, lock, lock_decorator, orphans
from cache_tools.backends.redis import DjangoRedisBackend


def test_hung_server_is_bounded_by_the_socket_timeout(private_redis, down_alias, unique, caplog):
    caplog.set_level(logging.WARNING)
    calls = []

    @cache_aside(timeout=60, cache=down_alias, key_maker=lambda x: (unique, x))
    def compute(x):
        calls.append(x)
        return x * 2

    assert compute(1) == 2
    private_redis.pause()  # SIGSTOP: connections hang instead of being refused
    try:
        started = time.monotonic()
        assert compute(2) == 4
        with pytest.raises(LockUnavailable) as info, lock(unique, cache=down_alias):
            pass
        assert time.monotonic() - started < 3
        assert isinstance(info.value, LockError)
    finally:
        private_redis.resume()
    assert compute(1) == 2 and calls == [1, 2]
    with lock(unique, cache=down_alias) as handle:
        assert handle.fence


def test_on_backend_error_run_runs_unlocked(private_redis, down_alias, unique, caplog):
    caplog.set_level(logging.WARNING, logger="cache_tools.lock")
    ran = []

    @lock_decorator(key_maker=unique, cache=down_alias, on_backend_error="run")
    def tolerant():
        ran.append(1)
        return "ran"

    @lock_decorator(key_maker=unique, cache=down_alias)
    def strict():
        ran.append(2)

    private_redis.stop()
    try:
        assert tolerant() == "ran"
        with pytest.raises(LockUnavailable, match="cannot take lock"):
            strict()
        assert ran == [1]
        assert "WITHOUT its lock" in caplog.text
    finally:
        private_redis.start()
    assert tolerant() == "ran" and ran == [1, 1]


def test_bad_on_backend_error():
    with pytest.raises(ValueError, match="on_backend_error"):
        lock_decorator(on_backend_error="ignore")


def test_stopped_server_computes_counts_errors_and_recovers(
    private_redis, down_alias, unique, caplog
):
    caplog.set_level(logging.WARNING, logger="cache_tools.aside")
    calls = []

    @cache_aside(timeout=60, cache=down_alias, key_maker=lambda x: (unique, x))
    def double(x):
        calls.append(x)
        return 2 * x

    double.cache_clear_stats()
    assert double(1) == 2 and double(1) == 2
    assert calls == [1]
    private_redis.stop()
    try:
        assert [double(1), double(2), double(1)] == [2, 4, 2]
        assert calls == [1, 1, 2, 1]
        assert caplog.text.count("is unavailable") == 1
    finally:
        private_redis.start()
    assert double(5) == 10
    assert double(5) == 10
    assert calls == [1, 1, 2, 1, 5]
    assert "reachable again" in caplog.text
    assert double.cache_info().errors == 3


def test_stopped_server_raises_lock_error_quickly_chained(private_redis, down_alias):
    ran = []

    @lock_decorator(cache=down_alias)
    def guarded():
        ran.append(1)

    guarded()
    private_redis.stop()
    try:
        started = time.monotonic()
        with pytest.raises(LockError, match="cannot take lock") as info:
            guarded()
        assert time.monotonic() - started < 2
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        assert ran == [1]
    finally:
        private_redis.start()
    guarded()
    assert ran == [1, 1]


def test_an_acquisition_whose_reply_was_lost_does_not_leave_a_ghost_lock(
    private_redis, down_alias, unique
):
    """The client gives up on a paused server, which runs the queued acquire when it resumes:
    that lock is released as soon as the server answers, not after its 30 s TTL."""
    with lock(unique, timeout=30, cache=down_alias):
        pass  # the server knows the scripts (EVALSHA), as any server in use does
    private_redis.pause()
    try:
        with pytest.raises(LockUnavailable) as info, lock(unique, timeout=30, cache=down_alias):
            pass
        assert info.value.outcome_unknown
    finally:
        private_redis.resume()
    resumed = time.monotonic()
    with lock(unique, timeout=30, cache=down_alias, blocking_timeout=5):
        waited = time.monotonic() - resumed
    assert waited < 1.5, waited  # outage over: a round trip and the releaser's retry delay
    deadline = time.monotonic() + 5
    while orphans.pending():
        assert time.monotonic() < deadline
        time.sleep(0.02)  # the releaser settles in the background


class PausableRedisCache(django_redis.cache.RedisCache):
    """django-redis, served by the adapter below (CACHE_TOOLS["ADAPTERS"])."""


class PauseAfterRead(DjangoRedisBackend):
    """The real adapter, which stops the real server right after one entry read: the next
    request (the script that takes the entry's lock) then times out and runs on resume."""

    then: Callable[[], None] | None = None

    def read(self, keys):
        fetched = super().read(keys)
        then, PauseAfterRead.then = PauseAfterRead.then, None
        if then:
            then()
        return fetched


def test_a_lost_entry_lock_reply_does_not_hang_the_next_caller(private_redis, down_alias, unique):
    caches = {**settings.CACHES}
    caches[down_alias] = {**caches[down_alias], "BACKEND": f"{__name__}.PausableRedisCache"}
    adapters = {f"{__name__}.PausableRedisCache": f"{__name__}.PauseAfterRead"}
    calls = []

    @cache_aside(timeout=60, cache=down_alias, key_maker=lambda: unique)  # lock_timeout 30 s
    def value():
        calls.append(1)
        return len(calls)

    with override_settings(CACHES=caches, CACHE_TOOLS={"ADAPTERS": adapters}):
        cache_aside(cache=down_alias)(lambda: None)()  # the server knows the scripts (EVALSHA)
        PauseAfterRead.then = private_redis.pause
        try:
            assert value() == 1  # computed without the cache; its entry-lock script is queued
        finally:
            private_redis.resume()  # the queued script takes the entry's lock for 30 s
        started = time.monotonic()
        assert value() == 2  # and that lock was released for us: no 30 s wait
        assert time.monotonic() - started < 2
        assert value() == 2


def test_memcached_acquisition_whose_reply_was_lost_is_released_on_resume(memcached, unique):
    caches = {
        **settings.CACHES,
        "mc": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": memcached.url,
            "KEY_PREFIX": settings.TEST_PREFIX,
            "OPTIONS": {"connect_timeout": 0.3, "timeout": 0.3},
        },
    }
    with override_settings(CACHES=caches):
        with lock(unique, timeout=30, cache="mc"):
            pass  # connected
        memcached.pause()
        try:
            with pytest.raises(LockUnavailable) as info, lock(unique, timeout=30, cache="mc"):
                pass
            assert info.value.outcome_unknown
        finally:
            memcached.resume()
        resumed = time.monotonic()
        with lock(unique, timeout=30, cache="mc", blocking_timeout=5):
            waited = time.monotonic() - resumed
    assert waited < 1.5, waited


def test_pooled_connections_closed_by_the_server_are_replaced_unnoticed(
    private_redis, down_alias, unique
):
    """The hit read and the lock scripts take connections from the client's pool themselves
    (cache_tools.backends._wire); connections the server closed (an idle timeout, a restart,
    CLIENT KILL) are replaced as the client replaces them, not reported as an outage."""
    import asyncio

    calls = []

    @cache_aside(timeout=60, cache=down_alias, key_maker=lambda x: (unique, x))
    def compute(x):
        calls.append(x)
        return x * 2

    @cache_aside(timeout=60, cache=down_alias, key_maker=lambda x: (unique, "async", x))
    async def acompute(x):
        calls.append(-x)
        return x * 3

    async def use_async():
        assert await acompute(1) == 3
        kill_all()
        assert await acompute(1) == 3  # a hit, on a replaced connection
        async with lock(unique, cache=down_alias) as handle:
            assert handle.fence

    admin = redis.Redis.from_url(private_redis.url)

    def kill_all():
        admin.client_kill_filter(_type="normal", skipme=True)

    assert compute(1) == 2
    with lock(unique, cache=down_alias):
        pass
    compute.cache_clear_stats()
    kill_all()
    assert compute(1) == 2  # a hit, on a replaced connection
    with lock(unique, cache=down_alias) as handle:
        assert handle.fence
    info = compute.cache_info()
    assert (info.hits, info.errors) == (1, 0)
    asyncio.run(use_async())
    assert calls == [1, -1]
