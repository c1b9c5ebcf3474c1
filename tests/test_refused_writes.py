"""A write the server refuses (too big, out of memory) or the serializer cannot encode: the
caller gets its value, the entry lock is released at once, one warning, an error counted; locks
raise LockUnavailable naming the limit. Never reported as an outage. (The uWSGI cache's limits
are tested inside uWSGI: tests/integration/test_uwsgi_limits.py.)"""

import logging
import threading
import time

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from cache_tools import LockUnavailable, cache_aside, lock, lock_decorator
from cache_tools.backends import get_backend


def memcached_alias(url, prefix):
    return {
        **settings.CACHES,
        "mc": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"connect_timeout": 1, "timeout": 1},
        },
    }


@pytest.fixture
def oom_alias(private_redis):
    """An alias on the run's private server with maxmemory just above what it uses."""
    client = redis.Redis.from_url(private_redis.url)
    client.flushdb()
    caches = {
        **settings.CACHES,
        "oom": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": private_redis.url,
            "KEY_PREFIX": "oom",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        },
    }
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 300_000)
    try:
        with override_settings(CACHES=caches):
            yield "oom", client
    finally:
        client.config_set("maxmemory", 0)
        client.flushdb()


def refused_value_behaves(alias, unique, caplog, size):
    caplog.set_level(logging.WARNING, logger="cache_tools")
    calls = []

    @cache_aside(timeout=60, cache=alias, key_maker=lambda: unique)
    def huge():
        calls.append(1)
        return b"x" * size

    huge.cache_clear_stats()
    started = time.monotonic()
    assert len(huge()) == size and len(huge()) == size  # returned, never raised
    assert time.monotonic() - started < 5  # the second call did not wait for a leaked lock
    assert calls == [1, 1] and not huge.is_cached()
    keys = huge.flight.keys(huge.argument_key((), {}))
    assert not get_backend(alias).exists(keys.lock.lock)
    assert huge.cache_info().errors == 2
    assert caplog.text.count("not caching the result") == 1
    assert "unreachable" not in caplog.text and "unavailable" not in caplog.text


def test_memcached_value_over_the_item_size(memcached_url, unique, caplog):
    with override_settings(CACHES=memcached_alias(memcached_url, settings.TEST_PREFIX)):
        refused_value_behaves("mc", unique, caplog, 2 * 1024 * 1024)


def test_redis_out_of_memory(oom_alias, unique, caplog):
    alias, _ = oom_alias
    refused_value_behaves(alias, unique, caplog, 1_000_000)


def test_redis_out_of_memory_refuses_locks_naming_the_limit(oom_alias, unique):
    alias, client = oom_alias
    # Full whatever else the server frees meanwhile (a margin below used_memory was not:
    # client buffers of earlier tests shrank under it once).
    client.config_set("maxmemory", 1)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", b"y")
    with pytest.raises(LockUnavailable, match="maxmemory"), lock(unique, cache=alias):
        pass


def test_a_full_server_still_frees_locks_and_entry_locks(oom_alias, unique, caplog):
    """DEL is allowed at maxmemory, the wake-ups and hand-overs are not: a release frees the
    lock anyway. Before, the release script failed at its first write and the lock stayed
    until the background releaser got through (CI once found it held after a refused store:
    the refused 1 MB value's query buffer kept the server over its limit a moment)."""
    alias, client = oom_alias
    backend = get_backend(alias)
    plain, handed = lock(unique, cache=alias, timeout=30), lock(unique + "h", cache=alias)
    plain.acquire()
    handed.acquire()
    client.set(handed.keys.waiting, "1")  # a waiter asked lately: the release hands it over
    client.config_set("maxmemory", 1)  # full from here on
    plain.release()
    handed.release()
    assert not backend.exists(plain.keys.lock) and not backend.exists(handed.keys.lock)

    @cache_aside(timeout=60, cache=alias, key_maker=lambda: unique)
    def fills_the_server():
        client.config_set("maxmemory", 1)  # the store and then the release meet a full server
        return b"x"

    client.config_set("maxmemory", 0)
    assert fills_the_server() == b"x" and not fills_the_server.is_cached()
    keys = fills_the_server.flight.keys(fills_the_server.argument_key((), {}))
    assert not backend.exists(keys.lock.lock)
    assert "not caching the result" in caplog.text


@pytest.mark.parametrize("alias", ["default", "django", "memcached"])
def test_unserialisable_results_are_returned_uncached_everywhere(
    alias, unique, caplog, memcached_url
):
    caplog.set_level(logging.WARNING, logger="cache_tools")
    caches = memcached_alias(memcached_url, settings.TEST_PREFIX)
    caches["memcached"] = caches.pop("mc")
    with override_settings(CACHES=caches):

        @cache_aside(timeout=60, cache=alias, key_maker=lambda: unique)
        def make_lock():
            return threading.Lock()

        make_lock.cache_clear_stats()
        assert make_lock() is not None and make_lock() is not None
        assert not make_lock.is_cached()
        assert make_lock.cache_info().errors == 2
        keys = make_lock.flight.keys(make_lock.argument_key((), {}))
        assert not get_backend(alias).exists(keys.lock.lock)
        assert caplog.text.count("not caching the result") == 1


def test_memcached_long_keys_are_hashed_to_fit(memcached_url, unique):
    prefix = "p" * 200  # 200 + ":1:" leaves memcached 47 bytes of its 250
    with override_settings(CACHES=memcached_alias(memcached_url, prefix)):

        @cache_aside(timeout=60, cache="mc", key_maker=lambda name: ("x" * 100, name))
        def long_named_function_that_goes_on_and_on_and_on_and_on_and_on_and_on(name):
            return name

        f = long_named_function_that_goes_on_and_on_and_on_and_on_and_on_and_on
        assert f(unique) == unique and f.is_cached(unique)
        assert len(f.cache_key(unique)) <= 250

        @lock_decorator(key_maker=lambda name: name, cache="mc")
        def guarded(name):
            return name

        name = unique + "n" * 200
        assert guarded(name) == name
        with lock(name, cache="mc", timeout=5) as handle:
            assert len(handle.key) <= 250 and handle.fence
