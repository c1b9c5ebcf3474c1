"""Errors are named consistently, and the caller's own exceptions are never taken for outages."""

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import django_redis.cache
import pytest
from django.conf import settings
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import cache_tools
from cache_tools import (
    BackendUnavailable,
    Lock,
    LockLost,
    LockUnavailable,
    StoreRefused,
    cache_aside,
    current_lock,
    lock,
    update,
)
from cache_tools.backends import get_backend
from cache_tools.keys import function_id


def test_backend_unavailable_and_friends_are_exported():
    for name in ("BackendUnavailable", "OutcomeUnknown", "StoreRefused", "UnserializableValue"):
        assert name in cache_tools.__all__ and issubclass(
            getattr(cache_tools, name), cache_tools.CacheToolsError
        )
    assert issubclass(cache_tools.OutcomeUnknown, BackendUnavailable)


def test_every_lock_operation_on_an_outage_raises_lock_unavailable(private_redis, down_alias):
    handle = Lock("outage-ops", cache=down_alias, timeout=5)
    assert handle.acquire()
    private_redis.stop()
    try:
        with pytest.raises(LockUnavailable, match="cannot extend"):
            handle.extend()
        with pytest.raises(LockUnavailable, match="cannot read"):
            handle.locked()
        with pytest.raises(LockUnavailable, match="cannot read"):
            handle.holder()
        with pytest.raises(LockUnavailable, match="cannot take"):
            Lock("outage-other", cache=down_alias).acquire()
    finally:
        private_redis.start()
    with pytest.raises(LockLost):  # the restarted server forgot it
        handle.release()
    assert current_lock() is None


def test_a_function_raising_backend_unavailable_is_not_run_twice(unique):
    calls = []

    @cache_aside(timeout=60, key_maker=lambda: unique)
    def talks_to_another_service():
        calls.append(1)
        raise BackendUnavailable("the other service's cache is down")

    with pytest.raises(BackendUnavailable, match="other service"):
        talks_to_another_service()
    assert calls == [1]


def test_dummy_cache_update_returns_the_function_of_none():
    assert update("k", lambda old: (old, "new"), cache="dummy") == (None, "new")


def test_store_refused_is_a_cache_tools_error_not_an_outage():
    assert not issubclass(StoreRefused, BackendUnavailable)


def test_functions_in_main_keep_their_identity_in_spawn_children(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing, sys
            sys.path.insert(0, sys.argv[1])
            from cache_tools.keys import function_id

            def compute(x):
                return x

            def child(queue):
                queue.put(function_id(compute))

            if __name__ == "__main__":
                context = multiprocessing.get_context("spawn")
                queue = context.Queue()
                process = context.Process(target=child, args=(queue,))
                process.start()
                print(function_id(compute), queue.get(timeout=30))
                process.join()
            """
        )
    )
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, str(script), root], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    assert out == ["__main__.compute", "__main__.compute"]
    assert function_id(test_backend_unavailable_and_friends_are_exported).startswith("tests.")


class MyRedis(django_redis.cache.RedisCache):
    """A project's own subclass: found by walking the class hierarchy."""


class MyLocMem(LocMemCache):
    pass


def test_subclasses_of_supported_caches_get_their_parents_adapter(unique):
    mine = {
        "myredis": {**settings.CACHES["default"], "BACKEND": "tests.test_errors.MyRedis"},
        "mylocmem": {"BACKEND": "tests.test_errors.MyLocMem"},
    }
    with override_settings(CACHES={**settings.CACHES, **mine}):
        assert type(get_backend("myredis")).__name__ == "DjangoRedisBackend"
        assert type(get_backend("mylocmem")).__name__ == "LocalMemoryBackend"

        @cache_aside(timeout=60, cache="myredis", key_maker=lambda: unique)
        def value():
            return unique

        assert value() == unique and value.is_cached()
        with lock(unique, cache="myredis") as handle:
            assert handle.fence


class UnknownCache(BaseCache):
    """A cache class cache_tools has no adapter for."""


def test_unknown_backends_name_the_adapters_setting(unique):
    unknown = {"odd": {"BACKEND": "tests.test_errors.UnknownCache"}}
    with override_settings(CACHES={**settings.CACHES, **unknown}):
        with pytest.raises(ImproperlyConfigured, match=r'CACHE_TOOLS\["ADAPTERS"\]'):
            get_backend("odd")
        adapters = {"tests.test_errors.UnknownCache": "cache_tools.backends.local.DummyBackend"}
        with override_settings(CACHE_TOOLS={"ADAPTERS": adapters}):
            assert type(get_backend("odd")).__name__ == "DummyBackend"
        bad = {"tests.test_errors.UnknownCache": "tests.test_errors.UnknownCache"}
        with (
            override_settings(CACHE_TOOLS={"ADAPTERS": bad}),
            pytest.raises(ImproperlyConfigured, match="not a subclass"),
        ):
            get_backend("odd")


def test_user_code_errors_are_not_logged_as_outages(unique, caplog):
    caplog.set_level(logging.WARNING, logger="cache_tools")

    @cache_aside(timeout=60, key_maker=lambda: unique)
    def failing():
        raise ConnectionError("the caller's own connection")

    with pytest.raises(ConnectionError):
        failing()
    assert "unavailable" not in caplog.text
    assert failing.cache_info().errors == 0


def test_version_comes_from_the_installed_distribution():
    from importlib.metadata import version

    assert cache_tools.__version__ == version("django-cache-flight")
