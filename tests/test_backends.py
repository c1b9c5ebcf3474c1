"""Backends outside the contract suite (tests/contract runs it on the shared ones): LocMem
between threads, files and database in one process, DummyCache, UWSGICache outside uWSGI."""

import random
import threading
import time

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from cache_tools import CacheInfo, LockError, cache_aside, lock, lock_decorator, update
from cache_tools.backends import get_backend, prepare_all
from cache_tools.testing.contract import run_processes


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
        assert not get_backend(local_alias).acquire(first.keys, "someone-else", 5, False).taken
    assert not first.locked()
    with lock(unique, cache=local_alias, timeout=5) as second:
        assert second.fence > first.fence

    assert update(unique, lambda old: (old or 0) + 1, cache=local_alias) == 1
    assert update(unique, lambda old: (old or 0) + 1, cache=local_alias) == 2
    assert caches[local_alias].get(unique) == 2


def _backoffs(index, barrier):
    from cache_tools.backends.generic import poll_delay

    return [poll_delay(3) for _ in range(5)]


def test_forked_processes_back_off_by_different_amounts():
    """A herd forked from one parent (uWSGI's workers) must not retry in lockstep, and the
    application's global random state is left alone."""
    from cache_tools._process import jitter

    jitter.get()  # the parent's generator exists before the fork
    state = random.getstate()
    drawn = run_processes(4, _backoffs)
    assert len({tuple(d) for d in drawn}) == 4
    assert random.getstate() == state


def test_start_up_leaves_an_alias_it_cannot_set_up_to_fail_where_it_is_used(settings, caplog):
    """``prepare_all`` (run by ``AppConfig.ready``) imports what each alias needs; an alias it
    cannot set up does not stop the process from starting, and its first use says why."""
    settings.CACHES = {**settings.CACHES, "broken": {"BACKEND": "no_such_package.Cache"}}
    with caplog.at_level("DEBUG", logger="cache_tools.backends"):
        prepare_all()
    assert "could not prepare cache alias 'broken'" in caplog.text
    with pytest.raises(ImproperlyConfigured, match="cannot import its BACKEND"):
        get_backend("broken")
