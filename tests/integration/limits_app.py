"""The test project plus ``/probe/...`` endpoints that run the refused-write scenarios inside a
real uWSGI worker (the uWSGI cache exists only there) and answer with JSON."""

import json

from django.core.cache import cache

from cache_tools import LockError, cache_aside, lock
from cache_tools.backends import get_backend
from cache_tools.errors import StoreRefused
from testproject.wsgi import application as project


@cache_aside(timeout=60, key_maker=lambda size: ("probe-big", size))
def big_value(size):
    return b"x" * size


def probe_big_value():
    big_value.cache_clear_stats()
    first, second = big_value(5000), big_value(5000)
    keys = big_value.flight.keys(big_value.argument_key((5000,), {}))
    return {
        "returned": [len(first), len(second)],
        "cached": big_value.is_cached(5000),
        "errors": big_value.cache_info().errors,
        "entry_lock_left": get_backend().exists(keys.lock.lock),
    }


def probe_full_cache():
    filled = []
    try:
        for i in range(1000):
            cache.set(f"probe-filler-{i}", b"y" * 1500, 60)
            filled.append(i)
    except StoreRefused as exc:
        refused = str(exc)
    else:
        refused = None
    try:
        with lock("probe-when-full", timeout=5):
            outcome = "taken"
    except LockError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    for i in filled:
        cache.delete(f"probe-filler-{i}")
    return {"refused": refused, "lock": outcome, "filled": len(filled)}


def probe_long_keys():
    key = "k" * 250
    cache.set(key, "long", 60)
    with lock("n" * 200, timeout=5) as handle:
        fence = handle.fence
    return {"value": cache.get(key), "fence": fence}


def probe_key_warnings():
    """Which cache operations warn (CacheKeyWarning) on a key with a space or a control
    character, as Django's own cache tests expect of every cache but memcached; and whether
    a long key (which make_key shortens) warns."""
    import warnings

    from django.core.cache.backends.base import CacheKeyWarning

    operations = {
        "get": lambda k: cache.get(k),
        "set": lambda k: cache.set(k, 1, 60),
        "add": lambda k: cache.add(k, 1, 60),
        "touch": lambda k: cache.touch(k, 60),
        "has_key": lambda k: cache.has_key(k),
        "delete": lambda k: cache.delete(k),
        "get_many": lambda k: cache.get_many([k]),
        "set_many": lambda k: cache.set_many({k: 1}, 60),
        "delete_many": lambda k: cache.delete_many([k]),
        "get_or_set": lambda k: cache.get_or_set(k, 1, 60),
    }
    found = {}
    for kind, key in (
        ("space", "key with spaces"),
        ("control", "key\x07bell"),
        ("long", "k" * 251),
    ):
        warned = []
        for name, operation in operations.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                operation(key)
            if any(issubclass(w.category, CacheKeyWarning) for w in caught):
                warned.append(name)
        found[kind] = warned
    return found


PROBES = {
    "/probe/key-warnings": probe_key_warnings,
    "/probe/big-value": probe_big_value,
    "/probe/full": probe_full_cache,
    "/probe/long-keys": probe_long_keys,
}


def application(environ, start_response):
    probe = PROBES.get(environ["PATH_INFO"])
    if probe is None:
        return project(environ, start_response)
    body = json.dumps(probe()).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
