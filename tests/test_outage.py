"""A cache server that refuses or hangs: locks fail closed (or run, when asked), cache-aside
keeps returning results, and both recover without a restart."""

import logging
import time

import pytest
from django.conf import settings
from django.test import override_settings

from cache_tools import LockError, LockUnavailable, cache_aside, lock, lock_decorator


@pytest.fixture
def down_alias(private_redis):
    caches = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": private_redis.url,
            "KEY_PREFIX": "outage",
            # django-redis must not make a failed lock look acquired by swallowing the error.
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 0.3,
                "SOCKET_TIMEOUT": 0.3,
                "IGNORE_EXCEPTIONS": True,
            },
        },
    }
    with override_settings(CACHES=caches):
        yield "down"


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
