import logging
import threading
import time

import pytest
import redis
from django.conf import settings

from cache_tools import CacheInfo, cache_aside, cache_view, lock_decorator


def raw() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def raw_key(name: str) -> str:
    return f"{settings.TEST_PREFIX}:raw:{name}"


@cache_aside(timeout=60)
def slow_square(name, x):
    raw().incr(raw_key(f"{name}:computations"))
    time.sleep(0.2)  # the expensive computation
    return x * x


def call_slow_square(index, barrier, name):
    barrier.wait()
    return slow_square(name, 12)


def test_cold_key_is_computed_once_by_24_processes(processes, unique):
    assert processes(24, call_slow_square, unique) == [144] * 24
    assert int(raw().get(raw_key(f"{unique}:computations"))) == 1
    info = slow_square.cache_info()
    assert info.computations >= 1 and info.misses >= 1


@cache_aside(timeout=60, key_maker="counted:{name}")
def counted(name):
    return raw().incr(raw_key(f"{name}:n"))


def call_counted(index, barrier, name, calls):
    barrier.wait()
    return [counted(name) for _ in range(calls)]


def test_statistics_are_shared_by_all_processes(processes, unique):
    counted.cache_clear_stats()
    processes(4, call_counted, unique, 10)
    assert counted.cache_info() == CacheInfo(
        hits=39, misses=1, stale_hits=0, computations=1, errors=0
    )
    counted.cache_clear_stats()
    assert counted.cache_info() == CacheInfo(0, 0, 0, 0, 0)


def test_counts_of_many_threads_all_arrive_also_of_threads_that_ended(unique):
    """Each thread counts in its own buffer; the flusher sends what grew. Sixteen threads hit
    at once (nothing lost to a race), and all have ended before the counts are read."""
    counted.cache_clear_stats()
    counted(unique)  # the one miss
    start = threading.Barrier(16)

    def hit():
        start.wait()
        for _ in range(250):
            counted(unique)

    threads = [threading.Thread(target=hit) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted.cache_info() == CacheInfo(hits=4000, misses=1, computations=1)


def test_a_thread_counting_many_locks_keeps_a_bounded_buffer_and_loses_nothing(unique, monkeypatch):
    """Lock names can be as many as the objects they guard: a thread's counts are handed to
    the flusher in bounded dicts, while the flusher drains concurrently, and every count
    arrives exactly once (the server keeps every name here)."""
    from cache_tools import stats
    from cache_tools.backends import get_backend

    monkeypatch.setattr(stats, "LOCK_NAMES_KEPT", 20_000)

    backend, names, sizes = get_backend(), [f"{unique}:{n}" for n in range(10_000)], []

    def count():
        for number, name in enumerate(names):
            stats.lock_event(backend, name)
            if number % 7 == 0:
                stats.lock_event(backend, name, waited=0.002)
            if number % 500 == 0:
                stats.flush()  # the flusher at work meanwhile
                sizes.append(len(stats._buffer.get()._local.mine.counts))

    worker = threading.Thread(target=count)
    worker.start()
    worker.join()
    assert max(sizes) <= stats._THREAD_COUNTERS
    for number in (0, 1, 4_096, 4_097, 9_996, 9_999):
        expected = (2, 1, 2) if number % 7 == 0 else (1, 0, 0)
        info = stats.read_lock(backend.alias, names[number])
        assert (info.acquired, info.waited, info.wait_ms) == expected, number


def test_counting_for_a_thousand_functions_the_flusher_sends_a_bounded_rate(unique):
    """A process counting for 1 000 functions at once gathers each batch for longer (2 s, not
    0.2 s), so the server gets a bounded rate of ``HINCRBY`` (two per counter a flush: the
    count and its minute), not 1 000 counters five times a second; and every count arrives."""
    from cache_tools import stats
    from cache_tools.backends import get_backend

    backend = get_backend()
    stats_keys = [backend.stats_key(f"{unique}.function_{n}") for n in range(1000)]
    server = raw()

    def increments() -> int:
        return int(server.info("commandstats").get("cmdstat_hincrby", {}).get("calls", 0))

    stats.flush()
    before, started, rounds = increments(), time.monotonic(), 0
    while time.monotonic() - started < 1.5:
        for stats_key in stats_keys:
            stats.add(backend.alias, stats_key, "hits")
        rounds += 1
    elapsed = time.monotonic() - started
    sent = increments() - before
    stats.flush()
    # One flush per 2 s at most (and the first, after 0.2 s); five a second would be 7 or more.
    assert sent <= 2 * len(stats_keys) * (elapsed / 2.0 + 1), (sent, elapsed)
    for stats_key in (stats_keys[0], stats_keys[-1]):
        assert backend.read_counts(stats_key, ("hits",)) == {"hits": rounds}


@cache_aside(timeout=60, key_maker="typed:{value}")
def typed(value):
    return type(value).__name__


def test_equal_arguments_of_different_types_keep_their_own_keys(unique):
    """Argument keys are remembered by the arguments: 1, True and 1.0 are equal (and hash
    alike) but must not share a memo entry, nor a str subclass its str."""

    class Name(str):
        pass

    assert [typed(v) for v in (1, True, 1.0)] == ["int", "bool", "float"]
    assert [typed(v) for v in (1, True, 1.0)] == ["int", "bool", "float"]  # hits
    assert typed.cache_key(1) != typed.cache_key(True) != typed.cache_key(1.0)
    assert typed(unique) == "str" and typed(Name(unique)) == "str"  # one key: escaped alike


@pytest.mark.parametrize("falsy", [None, 0, "", [], False, 0.0, {}])
def test_falsy_results_are_cached_and_hit(falsy, unique):
    calls = []

    @cache_aside(timeout=60, key_maker=lambda name: ("falsy", name))
    def compute(name):
        calls.append(name)
        return falsy

    assert compute(unique) == falsy
    assert compute(unique) == falsy
    assert type(compute(unique)) is type(falsy)
    assert calls == [unique]


def test_cache_none_false_does_not_store_none(unique):
    calls = []

    @cache_aside(timeout=60, cache_none=False, key_maker=lambda name: name)
    def maybe(name):
        calls.append(name)

    maybe(unique)
    maybe(unique)
    assert calls == [unique, unique]


@pytest.mark.parametrize("alias", ["default", "django"])
def test_invalidate_refresh_and_invalidate_all(unique, alias):
    source = {"a": 1, "b": 2}

    @cache_aside(timeout=60, cache=alias, key_maker=lambda item: (unique, item))
    def read(item):
        return source[item]

    assert (read("a"), read("b")) == (1, 2)
    source.update(a=10, b=20)
    assert (read("a"), read("b")) == (1, 2)
    assert read.invalidate("a") is True
    assert read.invalidate("a") is False
    assert (read("a"), read("b")) == (10, 2)
    source["b"] = 200
    assert read.refresh("b") == 200
    assert read("b") == 200
    source.update(a=1000, b=2000)
    read.invalidate_all()
    assert (read("a"), read("b")) == (1000, 2000)
    assert read.cache_key("a").startswith(
        settings.CACHES[alias]["KEY_PREFIX"] + ":1:ct:v:{tests.test_aside.test_inval"
    )


def test_version_is_part_of_the_key(unique):
    def make(version, result):
        @cache_aside(timeout=60, version=version, key_maker=lambda: unique)
        def versioned():
            return result

        return versioned

    assert make(1, "one")() == "one"
    assert make(1, "other")() == "one"
    assert make(2, "two")() == "two"
    assert make(1, "x").cache_key() != make(2, "x").cache_key()


def test_unless_bypasses_read_and_write(unique):
    bypass = [True]
    calls = []

    @cache_aside(timeout=60, unless=lambda: bypass[0], key_maker=lambda: unique)
    def value():
        calls.append(1)
        return len(calls)

    value.cache_clear_stats()
    assert value() == 1 and value() == 2
    assert value.cache_info() == CacheInfo(0, 0, 0, 0, 0)
    bypass[0] = False
    assert value() == 3 and value() == 3


def test_callable_timeout_decides_per_result(unique):
    @cache_aside(timeout=lambda result: None if result == "forever" else 0.5, key_maker="{k}")
    def pick(k):
        return "forever" if k.endswith("f") else "short"

    client = raw()
    pick(unique + "f")
    pick(unique + "s")
    assert client.pttl(pick.cache_key(unique + "f")) == -1
    assert 0 < client.pttl(pick.cache_key(unique + "s")) <= 500


def test_timeout_expires_entries(unique):
    calls = []

    @cache_aside(timeout=0.2, key_maker=lambda: unique)
    def short():
        calls.append(1)
        return len(calls)

    assert short() == 1 and short() == 1
    deadline = time.monotonic() + 3
    while raw().exists(short.cache_key()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert short() == 2


@cache_aside(timeout=0.3, stale=30, key_maker="stale:{name}")
def slowly_refreshed(name):
    client = raw()
    generation = client.incr(raw_key(f"{name}:gen"))
    if generation > 1:
        client.rpush(raw_key(f"{name}:refreshing"), 1)
        # The refresh lasts until the test lets it finish: a caller waiting for it would hang.
        client.blpop([raw_key(f"{name}:finish")], timeout=30)
    return generation


def call_during_refresh(index, barrier, name):
    barrier.wait()
    return slowly_refreshed(name)


def test_stale_entries_are_served_while_one_caller_refreshes(processes, unique):
    slowly_refreshed.cache_clear_stats()
    assert slowly_refreshed(unique) == 1
    client = raw()
    deadline = time.monotonic() + 3
    while client.pttl(slowly_refreshed.cache_key(unique)) > 30_000 and time.monotonic() < deadline:
        time.sleep(0.02)  # wait for the entry to pass its 0.3 s timeout
    assert slowly_refreshed(unique) == 1  # stale: served, and this process starts the refresh
    assert client.blpop([raw_key(f"{unique}:refreshing")], timeout=5)
    assert processes(8, call_during_refresh, unique) == [1] * 8  # none waited, none refreshed
    client.rpush(raw_key(f"{unique}:finish"), 1)
    deadline = time.monotonic() + 5
    while slowly_refreshed(unique) != 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)  # the refresh stores right after it is let go
    assert int(client.get(raw_key(f"{unique}:gen"))) == 2
    info = slowly_refreshed.cache_info()
    assert info.stale_hits >= 9 and info.computations == 2


@cache_aside(timeout=60, key_maker="flaky:{name}")
def flaky(name):
    attempt = raw().incr(raw_key(f"{name}:attempts"))
    time.sleep(0.1)
    if attempt == 1:
        raise RuntimeError("first computation fails")
    return "ok"


def call_flaky(index, barrier, name):
    barrier.wait()
    try:
        return flaky(name)
    except RuntimeError as exc:
        return str(exc)


def test_failed_computation_hands_over_to_one_waiter(processes, unique):
    results = processes(6, call_flaky, unique)
    assert sorted(results) == ["first computation fails"] + ["ok"] * 5
    assert int(raw().get(raw_key(f"{unique}:attempts"))) == 2


def test_unserializable_result_is_returned_not_stored(unique, caplog):
    caplog.set_level(logging.WARNING, logger="cache_tools.aside")
    calls = []

    @cache_aside(timeout=60, key_maker=lambda: unique)
    def make_lock():
        calls.append(1)
        return threading.Lock()

    assert make_lock() is not None
    assert make_lock() is not None
    assert len(calls) == 2
    assert not raw().exists(make_lock.cache_key())
    assert "not caching the result" in caplog.text
    assert make_lock.cache_info().errors == 2


class Account:
    def __init__(self, pk):
        self.pk = pk
        self.calls = 0

    def __cache_key__(self):
        return self.pk

    @cache_aside(timeout=60)
    def balance(self, currency):
        self.calls += 1
        return f"{self.pk}:{currency}:{self.calls}"

    @classmethod
    @cache_aside(timeout=60)
    def rate(cls, currency):
        return f"{cls.__name__}:{currency}:{time.monotonic()}"


def test_methods_and_classmethods(unique):
    account = Account(unique)
    first = account.balance("EUR")
    assert account.balance("EUR") == first
    assert Account(unique).balance("EUR") == first
    assert Account(unique + "x").balance("EUR") != first
    assert account.balance.invalidate("EUR") is True
    assert account.balance("EUR") != first
    assert account.balance.cache_key("EUR") == Account(unique).balance.cache_key("EUR")
    assert Account.rate(unique) == Account.rate(unique)
    assert Account.balance.__wrapped__(account, "USD").startswith(f"{unique}:USD")


def test_bare_decorator_and_bad_options():
    @cache_aside
    def bare(x):
        return x

    assert bare(3) == 3 and bare.__name__ == "bare"
    with pytest.raises(ValueError, match="timeout must be a positive"):
        cache_aside(timeout=-1)
    with pytest.raises(ValueError, match="stale must be"):
        cache_aside(stale=-1)
    with pytest.raises(ValueError, match="lock_timeout"):
        cache_aside(lock_timeout=0)
    with pytest.raises(ValueError, match="unless must be"):
        cache_aside(unless=True)


@pytest.mark.parametrize("kind", [classmethod, staticmethod])
@pytest.mark.parametrize(
    ("decorator", "name"),
    [
        (lambda: cache_aside(timeout=60), "@cache_aside"),
        (lambda: cache_aside, "@cache_aside"),  # bare
        (lambda: lock_decorator(timeout=5), "@lock_decorator"),
        (lambda: lock_decorator, "@lock_decorator"),
        (lambda: cache_view(60), "@cache_view"),
    ],
)
def test_a_decorator_above_classmethod_says_to_put_it_below(kind, decorator, name):
    """Before: Python's "'classmethod' object is not callable", or a key_maker error."""
    with pytest.raises(TypeError, match=f"{name} must come below @{kind.__name__}"):

        class Shop:
            @decorator()
            @kind
            def price(cls_or_nothing=None):
                return 1
