"""django-valkey's caches beyond the contract suite: their async twins (native valkey.asyncio
for ValkeyCache and AsyncValkeyCache; worker threads, still woken by the server, for Sentinel
and cluster clients) and the configurations the adapters refuse."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from cache_tools import cache_aside, lock
from cache_tools.backends import get_backend
from cache_tools.backends.base import ThreadedTwin
from cache_tools.backends.redis import AsyncRedisBackend


@pytest.fixture
def async_valkey_alias():
    alias = {
        "BACKEND": "django_valkey.async_cache.cache.AsyncValkeyCache",
        "LOCATION": settings.REDIS_URL,
        "KEY_PREFIX": f"{settings.TEST_PREFIX}-avk",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }
    with override_settings(CACHES={**settings.CACHES, "async-valkey": alias}):
        yield "async-valkey"


async def hand_off_seconds(alias: str, name: str) -> float:
    """How long a waiting coroutine takes to get a lock after its holder releases it."""
    holder = lock(name, cache=alias, timeout=5)
    await holder.aacquire()
    waiter = asyncio.create_task(lock(name, cache=alias, timeout=5).aacquire(blocking_timeout=5))
    await asyncio.sleep(0.2)  # the waiter is blocked on the server's signal by now
    released = time.monotonic()
    await holder.arelease()
    assert await waiter
    return time.monotonic() - released


def test_valkey_cache_runs_async_on_valkey_asyncio(unique):
    calls = []

    @cache_aside(cache="valkey", timeout=60, key_maker=f"{unique}:{{x}}")
    async def double(x):
        calls.append(x)
        return 2 * x

    async def scenario():
        twin = get_backend("valkey").asynchronous()
        assert isinstance(twin, AsyncRedisBackend)
        assert type(twin.client).__module__.startswith("valkey.asyncio")
        assert [await double(2), await double(2)] == [4, 4]
        return await hand_off_seconds("valkey", unique)

    assert asyncio.run(scenario()) < 0.5
    assert calls == [2]
    assert double.is_cached(2)  # the sync client sees the same entry


# Django closes caches at the end of a request with a sync call that AsyncValkeyCache answers
# with a coroutine: django-valkey's warning, not cache_tools's.
@pytest.mark.filterwarnings("ignore:coroutine 'AsyncBackendCommands.close':RuntimeWarning")
def test_async_valkey_cache_serves_sync_and_async_callers(async_valkey_alias, unique):
    calls = []

    @cache_aside(cache=async_valkey_alias, timeout=60, key_maker=f"{unique}:{{x}}")
    def triple(x):
        calls.append(x)
        return 3 * x

    @cache_aside(cache=async_valkey_alias, timeout=60, key_maker=f"{unique}:{{x}}")
    async def atriple(x):
        calls.append(x)
        return 3 * x

    assert [triple(3), triple(3)] == [9, 9]  # a sync client made from the alias's settings
    assert [asyncio.run(atriple(4)), asyncio.run(atriple(4))] == [12, 12]  # valkey.asyncio
    assert calls == [3, 4]
    assert atriple.is_cached(4) and triple.is_cached(3)
    with lock(unique, cache=async_valkey_alias, timeout=5) as handle:
        assert handle.fence


def test_sentinel_clients_run_async_in_threads_still_woken_by_the_server(sentinel_aliases, unique):
    for alias in ("redis-sentinel", "valkey-sentinel"):

        async def scenario(alias=alias):
            assert isinstance(get_backend(alias).asynchronous(), ThreadedTwin)
            return await hand_off_seconds(alias, f"{unique}-{alias}")

        assert asyncio.run(scenario()) < 0.5, alias


def test_cluster_prefix_with_braces_is_refused(redis_cluster, unique):
    from tests.conftest import cluster_cache

    alias = {**cluster_cache(redis_cluster), "KEY_PREFIX": "app{1"}
    with (
        override_settings(CACHES={**settings.CACHES, "braces": alias}),
        pytest.raises(ImproperlyConfigured, match="must not add"),
    ):
        get_backend("braces").read(get_backend("braces")._entry_keys("f", "x"))


@pytest.mark.filterwarnings("ignore:coroutine 'AsyncBackendCommands.close':RuntimeWarning")
def test_async_sentinel_valkey_cache_is_refused_clearly(redis_sentinel):
    alias = {
        "BACKEND": "django_valkey.async_cache.cache.AsyncValkeyCache",
        "LOCATION": f"valkey://{redis_sentinel.master_name}/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_valkey.async_cache.client.AsyncSentinelClient",
            "CONNECTION_FACTORY": "django_valkey.async_cache.pool.AsyncSentinelConnectionFactory",
            "SENTINELS": redis_sentinel.sentinel_addresses,
        },
    }
    with (
        override_settings(CACHES={**settings.CACHES, "async-sentinel": alias}),
        pytest.raises(ImproperlyConfigured, match="SentinelClient"),
    ):
        get_backend("async-sentinel").client()
