"""The lock, cache-aside and update guarantees on every backend that shares state, and the
single-process ones (LocMem) and DummyCache where they apply."""

import itertools
import os
import signal
import threading
import time

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from cache_tools import CacheInfo, LockError, LockLost, cache_aside, lock, lock_decorator, update
from cache_tools.backends import get_backend
from tests.conftest import FORK


def counter_keys(alias, name):
    return f"{name}:counter", f"{name}:active", f"{name}:overlaps"


def test_lock_serialises_processes(shared_alias, unique, processes):
    cache = caches[shared_alias]
    counter, active, overlaps = counter_keys(shared_alias, unique)
    cache.set(counter, 0, None)
    cache.set(active, 0, None)
    cache.set(overlaps, 0, None)

    @lock_decorator(key_maker=unique, cache=shared_alias, timeout=10)
    def increment():
        if cache.incr(active) > 1:
            cache.incr(overlaps)
        value = cache.get(counter)
        time.sleep(0.0005)  # widen the race window
        cache.set(counter, value + 1, None)
        cache.decr(active)

    def worker(index, barrier):
        barrier.wait()
        for _ in range(15):
            increment()

    processes(6, worker)
    assert cache.get(counter) == 90
    assert cache.get(overlaps) == 0


def test_fences_increase_and_reentry_fails(shared_alias, unique):
    fences = []
    for _ in range(5):
        with lock(unique, cache=shared_alias, timeout=5) as handle:
            fences.append(handle.fence)
            with pytest.raises(LockError, match="already held"):
                lock(unique, cache=shared_alias).acquire()
    assert all(a < b for a, b in itertools.pairwise(fences))


def test_release_never_deletes_another_owners_lock(shared_alias, unique):
    backend = get_backend(shared_alias)
    with pytest.raises(LockLost), lock(unique, cache=shared_alias, timeout=5) as handle:
        backend.delete(handle.key if shared_alias != "memcached" else handle._keys.lock)
        assert backend.acquire(handle._keys, "another-owner", 5, False)[0]
    assert backend.exists(handle._keys.lock)  # the other owner's lock survived our release
    assert backend.release(handle._keys, "another-owner")


def hold_until_killed(alias, name, ready):
    with lock(name, cache=alias, timeout=1):
        ready.set()
        threading.Event().wait()


def test_killed_holder_is_replaced_after_its_ttl(shared_alias, unique):
    ready = FORK.Event()
    holder = FORK.Process(target=hold_until_killed, args=(shared_alias, unique, ready))
    holder.start()
    assert ready.wait(10)
    os.kill(holder.pid, signal.SIGKILL)
    killed = time.monotonic()
    holder.join()
    with lock(unique, cache=shared_alias, blocking_timeout=10):
        waited = time.monotonic() - killed
    # Redis: the waiter's wait is bounded by the holder's TTL (1 s) and one bounded wait (1 s)
    # at most. memcached: TTLs are whole seconds (up to 1 s more); polling adds at most 0.1 s.
    limit = (2.0 + 0.2 if shared_alias == "memcached" else 1.0 + 1.0) + 0.5  # + scheduling
    assert waited <= limit, waited


def test_cold_key_is_computed_once(shared_alias, unique, processes):
    cache = caches[shared_alias]
    cache.set(f"{unique}:n", 0, None)

    @cache_aside(timeout=60, cache=shared_alias, key_maker=lambda: unique)
    def slow():
        cache.incr(f"{unique}:n")
        time.sleep(0.2)
        return "value"

    def worker(index, barrier):
        barrier.wait()
        return slow()

    assert processes(12, worker) == ["value"] * 12
    assert cache.get(f"{unique}:n") == 1
    info = slow.cache_info()
    assert info.computations == 1 and info.misses == 1 and info.hits == 11


@pytest.mark.parametrize("falsy", [None, 0, "", [], False])
def test_falsy_values_are_hits(shared_alias, unique, falsy):
    calls = []

    @cache_aside(timeout=60, cache=shared_alias, key_maker=lambda: unique)
    def value():
        calls.append(1)
        return falsy

    assert value() == falsy and value() == falsy and calls == [1]


def test_invalidation_and_refresh(shared_alias, unique):
    source = {"v": 1}

    @cache_aside(timeout=60, cache=shared_alias, key_maker=lambda k: (unique, k))
    def read(k):
        return source["v"] + k

    assert read(0) == 1
    source["v"] = 10
    assert read(0) == 1
    assert read.invalidate(0) is True and read(0) == 10
    source["v"] = 20
    assert read.refresh(0) == 20 and read(0) == 20
    source["v"] = 30
    read.invalidate_all()
    assert read(0) == 30 and read(1) == 31


def test_stale_entry_is_refreshed_once_in_the_background(shared_alias, unique):
    cache = caches[shared_alias]
    cache.set(f"{unique}:gen", 0, None)
    refreshing, finish = threading.Event(), threading.Event()

    @cache_aside(timeout=1, stale=60, cache=shared_alias, key_maker=lambda: unique)
    def slowly():
        # caches[...] per call: it runs in a refresh thread too, and memcached clients are
        # not thread-safe (Django's caches are per thread).
        generation = caches[shared_alias].incr(f"{unique}:gen")
        if generation > 1:
            refreshing.set()
            finish.wait(30)  # until the test lets it finish: a waiting caller would hang
        return generation

    assert slowly() == 1
    keys = slowly.flight.keys(slowly.argument_key((), {}))
    deadline = time.monotonic() + 3
    while get_backend(shared_alias).read(keys).state != "stale":
        assert time.monotonic() < deadline
        time.sleep(0.05)  # wait for the entry's 1 s timeout to pass
    assert slowly() == 1
    assert refreshing.wait(5)
    assert [slowly() for _ in range(5)] == [1] * 5  # served stale while the refresh runs
    finish.set()
    deadline = time.monotonic() + 3
    while slowly() != 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)  # the refresh stores right after it is let go
    assert cache.get(f"{unique}:gen") == 2


def test_update_loses_nothing(shared_alias, unique, processes):
    def worker(index, barrier):
        barrier.wait()
        for _ in range(40):
            update(unique, lambda old: (old or 0) + 1, timeout=60, cache=shared_alias)

    processes(4, worker)
    assert caches[shared_alias].get(unique) == 160


def test_statistics_sum_over_processes(shared_alias, unique, processes):
    @cache_aside(timeout=60, cache=shared_alias, key_maker=lambda i: (unique, i))
    def square(i):
        return i * i

    square.cache_clear_stats()

    def worker(index, barrier):
        barrier.wait()
        return [square(i) for i in range(5)]

    processes(3, worker)
    info = square.cache_info()
    assert info.hits + info.misses == 15 and info.computations == info.misses == 5


def test_locmem_single_flight_holds_between_threads(unique):
    calls = []
    barrier = threading.Barrier(8)

    @cache_aside(timeout=60, cache="locmem", key_maker=lambda: unique)
    def slow():
        calls.append(1)
        time.sleep(0.2)
        return "v"

    results = []

    def call():
        barrier.wait()
        results.append(slow())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["v"] * 8 and calls == [1]
    with lock(unique, cache="locmem"), pytest.raises(LockError):
        lock(unique, cache="locmem").acquire()


def test_dummy_cache_passes_through_and_refuses_locks(unique):
    calls = []

    @cache_aside(timeout=60, cache="dummy")
    def through(x):
        calls.append(x)
        return x

    assert through(1) == 1 and through(1) == 1 and calls == [1, 1]
    assert through.cache_info() == CacheInfo(0, 0, 0, 0, 0)
    with pytest.raises(ImproperlyConfigured, match="cannot hold locks"):
        lock_decorator(cache="dummy")(lambda: None)()


def test_uwsgi_cache_refuses_to_work_outside_uwsgi():
    from cache_tools.backends.uwsgi import UWSGICache

    with pytest.raises(ImproperlyConfigured, match="works only inside uWSGI"):
        UWSGICache("default", {})


@pytest.fixture(params=["locmem", "file", "database"])
def local_alias(request, tmp_path):
    """Single-host backends, each with an alias of its own."""
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    backends = {
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "x"},
        "file": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        },
        "database": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "cache_tools_test_cache",
        },
    }
    if request.param == "database":
        request.getfixturevalue("db")
    with override_settings(CACHES={**settings.CACHES, "local": backends[request.param]}):
        if request.param == "database":
            call_command("createcachetable", "cache_tools_test_cache", verbosity=0)
        yield "local"


def test_single_host_backends_cache_lock_and_update(local_alias, unique):
    calls = []

    @cache_aside(timeout=60, cache=local_alias, key_maker=lambda x: (unique, x))
    def double(x):
        calls.append(x)
        return None if x == 0 else 2 * x

    double.cache_clear_stats()  # the alias name is reused by each parameter
    assert [double(0), double(0), double(2), double(2)] == [None, None, 4, 4]
    assert calls == [0, 2]
    assert double.invalidate(2) is True and double(2) == 4 and calls == [0, 2, 2]
    double.invalidate_all()
    assert double(2) == 4 and calls == [0, 2, 2, 2]
    assert double.cache_info().hits == 2

    with lock(unique, cache=local_alias, timeout=5) as first:
        assert first.locked()
        assert not get_backend(local_alias).acquire(first._keys, "someone-else", 5, False)[0]
    assert not first.locked()
    with lock(unique, cache=local_alias, timeout=5) as second:
        assert second.fence > first.fence

    assert update(unique, lambda old: (old or 0) + 1, cache=local_alias) == 1
    assert update(unique, lambda old: (old or 0) + 1, cache=local_alias) == 2
    assert caches[local_alias].get(unique) == 2
