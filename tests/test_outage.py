"""A cache server that refuses or hangs: locks fail closed (or run, when asked), cache-aside
keeps returning results, and both recover without a restart."""

import logging
import time

import pytest
import redis

from cache_tools import LockError, LockUnavailable, cache_aside, lock, lock_decorator


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
