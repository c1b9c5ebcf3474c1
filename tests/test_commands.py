import io
import time

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from cache_tools import Call, cache_aside, stats, warmup
from cache_tools.backends import get_backend


def raw() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def run(command, *args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err, **options)
    return out.getvalue()


def alias_settings(name, url, prefix):
    return {
        **settings.CACHES,
        name: {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        },
    }


@pytest.fixture
def ops(unique):
    """An alias of its own on the shared server, with foreign keys beside it."""
    prefix = f"{settings.TEST_PREFIX}-ops-{unique}"
    with override_settings(CACHES=alias_settings("ops", settings.REDIS_URL, prefix)):
        yield caches["ops"], prefix


def test_clear_cache_deletes_only_the_alias_namespace(ops, unique):
    cache, prefix = ops
    client = raw()
    for i in range(30):
        cache.set(f"k{i}", i)
    foreign = [f"{prefix}-other:1:k", f"{settings.TEST_PREFIX}-bare-{unique}", f"{prefix}x:1:k"]
    for key in foreign:
        client.set(key, 1)

    dry = run("clear_cache", "--cache", "ops", "--dry-run")
    assert "would delete 30 keys" in dry
    assert cache.get("k3") == 3

    assert "ops: deleted 30 keys" in run("clear_cache", "--cache", "ops")
    assert cache.get("k3") is None
    assert all(client.exists(key) for key in foreign)
    client.delete(*foreign)


def test_clear_cache_pattern_and_function(ops, unique):
    cache, _ = ops
    cache.set("user:1", 1)
    cache.set("user:2", 2)
    cache.set("order:1", 3)
    assert "deleted 2 keys" in run("clear_cache", "--cache", "ops", "--pattern", "user:*")
    assert cache.get("order:1") == 3 and cache.get("user:1") is None

    calls = []
    global invalidated_by_command

    @cache_aside(timeout=60, cache="ops", key_maker="{x}")
    def invalidated_by_command(x):
        calls.append(x)
        return x

    invalidated_by_command(1)
    invalidated_by_command(1)
    out = run("clear_cache", "--function", f"{__name__}.invalidated_by_command")
    assert "invalidated every entry" in out
    invalidated_by_command(1)
    assert calls == [1, 1]
    with pytest.raises(CommandError, match="not a cache_aside function"):
        run("clear_cache", "--function", f"{__name__}.run")


def test_clear_cache_errors():
    with pytest.raises(CommandError, match="unknown cache alias 'nope'"):
        run("clear_cache", "--cache", "nope")


def test_flush_and_unreachable_server(private_redis, unique):
    with override_settings(CACHES=alias_settings("private", private_redis.url, "p")):
        client = redis.Redis.from_url(private_redis.url)
        client.flushdb()  # this run's own server: earlier tests left keys in it
        caches["private"].set("mine", 1)
        client.set("foreign", 1)
        out = run("clear_cache", "--cache", "private", "--flush", "--dry-run")
        assert "deletes 2 keys, 1 outside private's namespace" in out
        assert client.dbsize() == 2
        run("clear_cache", "--cache", "private", "--flush", "--noinput")
        assert client.dbsize() == 0
        private_redis.stop()
        try:
            with pytest.raises(CommandError, match="'private' is unreachable"):
                run("clear_cache", "--cache", "private")
        finally:
            private_redis.start()


def test_two_hundred_thousand_keys_are_cleared_in_bounded_batches(private_redis):
    with override_settings(CACHES=alias_settings("private", private_redis.url, "big")):
        client = redis.Redis.from_url(private_redis.url)
        client.flushdb()
        pipe = client.pipeline(transaction=False)
        for i in range(200_000):
            pipe.set(f"big:1:k{i}", b"x")
            if i % 10_000 == 9_999:
                pipe.execute()
        client.set("other:1:k", 1)
        report = get_backend("private").delete_matching("big:1:*", batch_size=1000)
        assert report.deleted == 200_000
        assert report.largest_batch <= 1000 and report.batches >= 200
        assert client.dbsize() == 1


def record_warm(name, x):
    raw().rpush(f"{settings.TEST_PREFIX}:warmed:{name}", x)
    time.sleep(0.05)  # long enough that concurrent runs overlap
    if x == "boom":
        raise ValueError("cannot warm boom")
    return x


@pytest.fixture
def warmers(unique):
    @cache_aside(timeout=60, key_maker=f"{unique}:a:{{x}}")
    def warm_a(x):
        return record_warm(f"{unique}:a", x)

    @cache_aside(timeout=60, key_maker=f"{unique}:b:{{x}}")
    def warm_b(x):
        return record_warm(f"{unique}:b", x)

    warmup.register(warm_a, lambda: [Call(1), (2,), {"x": 3}], name=f"{unique}-a")
    warmup.register(warm_b, ["ok", "boom", "fine"], name=f"{unique}-b")
    return f"{unique}-a", f"{unique}-b"


def warmed(name):
    return [int(v) if v.isdigit() else v.decode() for v in raw().lrange(name, 0, -1)]


def test_warm_cache_computes_missing_entries_once(warmers, unique):
    name_a, _ = warmers
    key = f"{settings.TEST_PREFIX}:warmed:{unique}:a"
    assert "computed 3, already warm 0, not stored 0, failed 0" in run(
        "warm_cache", name_a, verbosity=2
    )
    assert sorted(warmed(key)) == [1, 2, 3]
    assert "computed 0, already warm 3, not stored 0, failed 0" in run("warm_cache", name_a)
    assert "computed 3, already warm 0" in run("warm_cache", name_a, "--force")
    assert len(warmed(key)) == 6


def test_warm_cache_failure_keeps_going_and_exits_1(warmers, unique):
    name_a, name_b = warmers
    with pytest.raises(CommandError, match="1 warm-up computations failed") as info:
        run("warm_cache", name_b, name_a, "-v", "2")
    assert info.value.returncode == 1
    assert sorted(warmed(f"{settings.TEST_PREFIX}:warmed:{unique}:a")) == [1, 2, 3]
    assert set(warmed(f"{settings.TEST_PREFIX}:warmed:{unique}:b")) == {"ok", "boom", "fine"}


def test_warm_cache_list_dry_run_and_unknown(warmers, unique):
    name_a, _ = warmers
    run("warm_cache", name_a, "--jobs", "2")
    listing = run("warm_cache", "--list", name_a)
    assert name_a in listing and "3" in listing.splitlines()[1]
    dry = run("warm_cache", name_a, "--dry-run", "--force")
    assert "3 entries would be computed" in dry
    assert "0 entries would be computed" in run("warm_cache", name_a, "--dry-run")
    with pytest.raises(CommandError, match=f"unknown warmer nope.*{name_a}"):
        run("warm_cache", "nope")


def warm_in_child(index, barrier, name):
    barrier.wait()
    return run("warm_cache", name, "--jobs", "3")


def test_concurrent_warm_cache_runs_compute_each_entry_once(warmers, unique, processes):
    name_a, _ = warmers
    processes(2, warm_in_child, name_a)
    assert sorted(warmed(f"{settings.TEST_PREFIX}:warmed:{unique}:a")) == [1, 2, 3]


def test_warmers_are_autodiscovered_from_cache_warmers_modules():
    registered = warmup.warmers()
    assert "demo.compute-extra" in registered
    assert "testproject.demo.services.compute" in registered
    assert [c.args for c in registered["demo.compute-extra"].argument_sets()] == [
        (n,) for n in range(10, 15)
    ]


def test_clear_cache_on_memcached_bumps_the_namespace_generation(memcached_url, unique):
    caches_setting = {
        **settings.CACHES,
        "mc": {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": memcached_url,
            "KEY_PREFIX": f"{settings.TEST_PREFIX}-mc",
        },
    }
    with override_settings(CACHES=caches_setting):
        calls = []

        @cache_aside(timeout=60, cache="mc", key_maker=lambda: unique)
        def entry():
            calls.append(1)
            return len(calls)

        caches["mc"].set(f"{unique}-foreign", "kept", 60)
        assert entry() == 1 and entry() == 1
        assert "would make every cache_tools entry unreachable" in run(
            "clear_cache", "--cache", "mc", "--dry-run"
        )
        assert entry() == 1
        out = run("clear_cache", "--cache", "mc")
        assert "made every entry written through cache_tools unreachable" in out
        assert entry() == 2
        assert caches["mc"].get(f"{unique}-foreign") == "kept"


def test_clear_cache_leaves_no_statistics_of_this_process_behind(ops):
    """Counts buffered before the command are sent before it deletes, not after it."""
    _, prefix = ops

    @cache_aside(timeout=60, cache="ops", key_maker="{x}")
    def counted(x):
        return x

    counted(1)  # a miss, counted in this process's buffer
    run("clear_cache", "--cache", "ops")
    stats.flush()  # what the flusher would send next
    assert list(raw().scan_iter(match=f"{prefix}:*")) == []


def test_overlapping_warmers_warm_each_entry_once_in_the_order_registered(unique):
    @cache_aside(timeout=60, key_maker=f"{unique}:o:{{x}}")
    def warm_o(x):
        return record_warm(f"{unique}:o", x)

    key = f"{settings.TEST_PREFIX}:warmed:{unique}:o"
    first, second = f"{unique}-first", f"{unique}-second"
    warmup.register(warm_o, [(1,), (2,), (2,), (3,)], name=second)
    warmup.register(warm_o, [(3,), (4,)], name=first)
    warmup.register(warm_o, [(1,), (2,), (2,), (3,)], name=second)  # again: now it runs last
    assert [n for n in warmup.warmers() if n in (first, second)] == [first, second]
    dry = run("warm_cache", first, second, "--dry-run", "--force", verbosity=2)
    assert "4 entries would be computed" in dry
    assert dry.index(f"would compute {first} Call(3)") < dry.index(f"{second} Call(1)")
    assert "computed 4, already warm 0" in run("warm_cache", first, second, "--force")
    assert warmed(key) == [3, 4, 1, 2]  # in the order asked, each entry once
    run("warm_cache", second, first, "--force", "--jobs", "1")
    assert warmed(key)[4:] == [1, 2, 3, 4]
