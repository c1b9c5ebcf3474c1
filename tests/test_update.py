import os
import signal
import threading
import time

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from cache_tools import OutcomeUnknown, UpdateConflict, update
from tests.conftest import FORK


def add_many(index, barrier, key, count, alias):
    barrier.wait()
    for _ in range(count):
        update(key, lambda old: (old or 0) + 1, timeout=60, cache=alias)


@pytest.mark.parametrize("alias", ["default", "django"])
def test_concurrent_updates_lose_nothing(processes, unique, alias):
    processes(8, add_many, unique, 100, alias)
    assert caches[alias].get(unique) == 800


def test_value_is_readable_with_cache_get_and_keeps_timeout(unique, redis_client):
    assert update(unique, lambda old: {"n": 1} if old is None else old, timeout=30) == {"n": 1}
    assert caches["default"].get(unique) == {"n": 1}
    assert 0 < redis_client.pttl(caches["default"].make_key(unique)) <= 30_000


def test_conflicts_give_up_when_the_budget_runs_out(unique):
    def interfere(old):
        caches["default"].set(unique, "changed behind our back")
        return "mine"

    with pytest.raises(UpdateConflict, match=r"lost \d+ races with other writers in 0.2s"):
        update(unique, interfere, budget=0.2)


def test_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        update("k", 5)
    with pytest.raises(ValueError, match="budget must be a positive number"):
        update("k", lambda old: old, budget=-1)


def test_a_lost_exec_reply_is_an_unknown_outcome_not_a_retry(private_redis, down_alias, unique):
    """The connection breaks after the write was sent (the server stalls, then applies it):
    update() must say the outcome is unknown, and must not run the function again."""
    calls = []

    def increment_then_stall(old):
        calls.append(old)
        private_redis.pause()  # the write goes out to a server that does not answer in time
        return (old or 0) + 1

    try:
        with pytest.raises(OutcomeUnknown, match="may or may not have been applied"):
            update(unique, increment_then_stall, cache=down_alias)
    finally:
        private_redis.resume()
    assert calls == [None]  # not retried: a retry could have applied it twice
    assert caches[down_alias].get(unique) == 1  # this time it had been applied


def hold_update_lock_until_killed(alias, key, ready):
    def block(old):
        ready.set()
        threading.Event().wait()  # killed in here, holding the update lock

    update(key, block, cache=alias)


def writer(index, barrier, alias, key):
    barrier.wait()
    return update(key, lambda old: (old or 0) + 1, cache=alias)


def test_memcached_update_after_a_killed_writer(memcached_url, unique, processes):
    caches_setting = {
        **settings.CACHES,
        "mc": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": memcached_url,
            "KEY_PREFIX": settings.TEST_PREFIX,
        },
    }
    with override_settings(CACHES=caches_setting):
        ready = FORK.Event()
        holder = FORK.Process(target=hold_update_lock_until_killed, args=("mc", unique, ready))
        holder.start()
        assert ready.wait(10)
        with pytest.raises(UpdateConflict, match=rf"held by [^ ]+:{holder.pid}:"):
            update(unique, lambda old: old, cache="mc", budget=0.5)  # names who holds it
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        killed = time.monotonic()
        results = processes(8, writer, "mc", unique)
        waited = time.monotonic() - killed
    assert sorted(results) == list(range(1, 9))  # every writer got through, none lost
    assert waited < 2 + 1 + 2  # the lock's TTL, memcached's whole seconds, the writers' work
