import asyncio
import gc
import itertools
import logging
import os
import threading
import time
import uuid
import warnings

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cache_tools import (
    Lock,
    LockError,
    LockLost,
    cache_aside,
    current_lock,
    lock,
    lock_decorator,
)
from tests.conftest import FORK


def raw() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def raw_key(name: str) -> str:
    return f"{settings.TEST_PREFIX}:raw:{name}"


@lock_decorator(timeout=10)
def increment(name):
    """A non-atomic read-modify-write that loses updates unless serialised."""
    client = raw()
    if client.incr(raw_key(f"{name}:active")) > 1:
        client.incr(raw_key(f"{name}:overlaps"))
    value = int(client.get(raw_key(f"{name}:counter")) or 0)
    time.sleep(0.0005)  # widen the race window; not used for synchronisation
    client.set(raw_key(f"{name}:counter"), value + 1)
    client.decr(raw_key(f"{name}:active"))
    return current_lock().fence


def increment_many(index, barrier, name, calls):
    barrier.wait()
    return [increment(name) for _ in range(calls)]


def test_read_modify_write_is_exact_across_processes(processes, unique):
    fences = processes(8, increment_many, unique, 25)
    client = raw()
    assert int(client.get(raw_key(f"{unique}:counter"))) == 200
    assert client.get(raw_key(f"{unique}:overlaps")) is None
    all_fences = [fence for per_process in fences for fence in per_process]
    assert len(set(all_fences)) == 200


@lock_decorator(timeout=10)
def rendezvous(name, partner):
    """Inside the lock for ``name``, meet the process holding the lock for ``partner``."""
    client = raw()
    client.rpush(raw_key(f"{partner}:knock"), 1)
    return client.blpop([raw_key(f"{name}:knock")], timeout=5) is not None


def meet(index, barrier, names):
    barrier.wait()
    name, partner = names[index], names[1 - index]
    return rendezvous(name, partner)


def test_different_arguments_run_concurrently(processes, unique):
    assert processes(2, meet, [f"{unique}a", f"{unique}b"]) == [True, True]


@lock_decorator(timeout=10)
def record_order(name):
    raw().rpush(raw_key(f"{name}:fences"), current_lock().fence)


def record_many(index, barrier, name):
    barrier.wait()
    for _ in range(10):
        record_order(name)


def test_fences_strictly_increase_across_processes(processes, unique):
    processes(4, record_many, unique)
    fences = [int(f) for f in raw().lrange(raw_key(f"{unique}:fences"), 0, -1)]
    assert len(fences) == 40
    assert all(a < b for a, b in itertools.pairwise(fences))


@lock_decorator(key_maker="long:{name}", timeout=0.6, auto_renew=True)
def long_work(name, seconds):
    started = time.time()
    raw().rpush(raw_key(f"{name}:inside"), 1)
    time.sleep(seconds)  # the work itself: three TTLs long
    return started, time.time()


def contender(index, barrier, name):
    barrier.wait()
    if index == 0:
        return long_work(name, 1.8)
    assert raw().blpop([raw_key(f"{name}:inside")], timeout=10)
    return long_work(name, 0)


def test_auto_renew_keeps_the_lock_for_work_longer_than_the_ttl(processes, unique):
    (first_start, first_end), (second_start, _) = processes(2, contender, unique)
    assert first_end - first_start >= 1.8
    assert second_start >= first_end


def test_deleting_the_key_under_a_holder_raises_lock_lost(unique):
    @lock_decorator(key_maker=lambda: unique, timeout=5)
    def victim():
        raw().delete(victim.lock_key())
        return "done"

    with pytest.raises(LockLost, match="lost while held"):
        victim()


def test_watchdog_reports_a_lost_lock_at_once(unique, caplog):
    caplog.set_level(logging.WARNING, logger="cache_tools.lock")
    with pytest.raises(LockLost), lock(unique, timeout=0.3) as handle:
        raw().delete(handle.key)
        deadline = time.monotonic() + 2
        while not handle.lost and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handle.lost
    assert "lost lock" in caplog.text


def test_reentry_raises_at_once(unique):
    @lock_decorator(key_maker=lambda depth: unique)
    def recurse(depth):
        return recurse(depth + 1) if depth == 0 else "inner"

    started = time.monotonic()
    with pytest.raises(LockError, match="already held by this thread"):
        recurse(0)
    assert time.monotonic() - started < 1
    with lock(unique), pytest.raises(LockError, match="already held"), lock(unique):
        pass


def test_lock_key_and_current_lock(unique):
    @lock_decorator(key_maker="fetch:{name}")
    def fetch_remote_thing(name):
        held = current_lock()
        held.extend(60)
        return held.key, held.fence, raw().pttl(held.key)

    key, fence, pttl = fetch_remote_thing(unique)
    assert key == fetch_remote_thing.lock_key(unique)
    assert key == f"{settings.TEST_PREFIX}:1:ct:lock:{{fetch:{unique}}}"
    assert fence > 0 and 30_000 < pttl <= 60_000
    assert current_lock() is None
    assert not fetch_remote_thing.is_locked(unique)


def test_bare_and_called_forms(unique):
    @lock_decorator
    def bare(x):
        return x * 2

    @lock_decorator()
    def called(x):
        return x * 3

    assert bare(2) == 4 and called(2) == 6
    assert bare.__name__ == "bare"
    assert bare.lock_key(1) != called.lock_key(1)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="timeout must be a positive"):
        lock_decorator(timeout=0)
    with pytest.raises(ValueError, match="timeout must be a positive"):
        lock("x", timeout=None)
    with pytest.raises(ValueError, match="blocking_timeout"):
        lock_decorator(blocking_timeout=-1)
    with pytest.raises(ValueError, match="on_timeout"):
        lock_decorator(on_timeout="wait")
    with pytest.raises(ImproperlyConfigured, match=r"'dummy' \(DummyCache\) cannot hold locks"):
        lock("x", cache="dummy")
    with pytest.raises(ImproperlyConfigured, match="'nope' is not in CACHES"):
        lock("x", cache="nope")


def blocked_clients():
    """Clients the server has blocked (BLPOP): waiters in a lock's line."""
    return raw().info("clients")["blocked_clients"]


def wait_until_blocked(count):
    deadline = time.monotonic() + 10
    while blocked_clients() < count:
        assert time.monotonic() < deadline, "the waiter never blocked on the server"
        time.sleep(0.005)


def wait_in_line(name, order, started):
    started.set()
    with lock(name, timeout=10, blocking_timeout=10):
        raw().rpush(order, os.getpid())


def test_hand_off_is_first_come_first_served_even_against_the_releaser(unique):
    """Two processes queue behind the holder; the holder releases and at once asks again: it
    goes behind them (before, the releaser usually won that race)."""
    order = raw_key(f"{unique}:order")
    handle = lock(unique, timeout=10)
    handle.acquire()
    waiters = []
    blocked = blocked_clients()
    for expected in (1, 2):
        started = FORK.Event()
        process = FORK.Process(target=wait_in_line, args=(unique, order, started))
        process.start()
        assert started.wait(10)
        wait_until_blocked(blocked + expected)  # in the server's line
        waiters.append(process)
    handle.release()
    with lock(unique, timeout=10, blocking_timeout=10):
        raw().rpush(order, os.getpid())
    for process in waiters:
        process.join(10)
    pids = [int(pid) for pid in raw().lrange(order, 0, -1)]
    assert pids == [waiters[0].pid, waiters[1].pid, os.getpid()]


def test_a_waiter_that_gives_up_leaves_the_line(unique):
    outcome = []
    with lock(unique, timeout=10):
        waiter = threading.Thread(
            target=lambda: outcome.append(Lock(unique).acquire(blocking_timeout=0.2))
        )
        waiter.start()
        waiter.join(10)
        assert outcome == [False]
    with lock(unique, blocking_timeout=0) as handle:  # nobody left in line to hand it to
        assert (
            handle.locked()
            and handle.holder()
            == handle._token.rsplit(":", 1)[0] + ":" + (handle._token.rsplit(":", 1)[1])
        )
    assert not handle.locked() and handle.holder() is None  # free again, at once


@given(
    st.lists(
        st.sampled_from(["take", "forget fence", "roll fence back", "take and lose"]),
        max_size=12,
    )
)
@hypothesis_settings(max_examples=40, deadline=None)
def test_fences_never_go_back_whatever_the_server_forgets(steps):
    """The fence counter expires with its lock, may be evicted, or be older on a promoted
    replica: the next fence is still above every earlier one."""
    name = f"fences-{uuid.uuid4().hex[:8]}"
    fences = []
    for step in steps:
        handle = Lock(name, timeout=5, auto_renew=False)
        assert handle.acquire(blocking_timeout=0)
        fences.append(handle.fence)
        if step == "forget fence":
            raw().delete(handle.keys.fence)  # expired, evicted, or lost in a failover
        if step == "roll fence back":  # a promoted replica that lacks the last increments
            raw().set(handle.keys.fence, fences[0] - 1000)
        if step == "take and lose":
            raw().delete(handle.keys.lock, handle.keys.fence)
            with pytest.raises(LockLost):
                handle.release()
        else:
            handle.release()
    assert all(a < b for a, b in itertools.pairwise(fences)), fences
    assert raw().pttl(Lock(name, timeout=5).keys.fence) <= 5000  # lives with its lock


def test_companion_keys_do_not_outlive_their_lock_by_more_than_its_ttl(unique):
    with lock(unique, timeout=1) as handle:
        keys = handle.keys
    ttls = {name: raw().pttl(getattr(keys, name)) for name in ("fence", "signal", "waiters")}
    assert all(ttl <= 2000 for ttl in ttls.values()), ttls  # -2: gone, else bounded


def test_a_released_lock_leaves_its_fence_for_a_second_not_its_ttl(unique):
    """Fences restart from the server clock, so a counter need not outlive its release: a
    site with millions of entries a day would otherwise keep a counter per entry for the
    lock's full TTL (a 10 s soak left one per entry)."""
    with lock(unique, timeout=600) as handle:
        assert raw().pttl(handle.keys.fence) > 500_000  # guards the holder meanwhile
    assert 0 < raw().pttl(handle.keys.fence) <= 1000

    @cache_aside(timeout=60, lock_timeout=600, key_maker=f"{unique}:{{x}}")
    def entry(x):
        return x

    entry(1)
    fence = entry.flight.keys(entry.argument_key((1,), {})).lock.fence
    assert raw().pttl(fence) <= 1000


def test_one_locks_failing_renewal_does_not_stop_the_others(unique, caplog):
    """The watchdog renews every lock of the process: a renewal that fails unexpectedly (the
    key turned into a hash by someone else) must not end the thread."""
    broken, kept = lock(f"{unique}-broken", timeout=0.3), lock(f"{unique}-kept", timeout=0.3)
    broken.acquire()
    raw().delete(broken.key)
    raw().hset(broken.key, "not", "a lock")
    with kept:
        deadline = time.monotonic() + 1.5  # five of kept's TTLs
        while time.monotonic() < deadline:
            assert kept.locked() and not kept.lost
            time.sleep(0.05)
    raw().delete(broken.key)
    broken._forget()


def test_a_short_lock_is_renewed_from_its_first_third_and_after_reacquiring(unique):
    """The watchdog sleeps up to a second; a lock due sooner wakes it. A handle released and
    taken again is watched again."""
    handle = lock(unique, timeout=0.3)
    for _ in range(2):
        with handle:
            time.sleep(0.9)  # three TTLs
            assert raw().get(handle.key) is not None and not handle.lost


def tokens_in_child(index, barrier):
    barrier.wait()
    from cache_tools.lock_record import new_token

    return [new_token() for _ in range(3)]


def test_lock_tokens_are_unique_across_forked_processes(processes):
    from cache_tools.lock_record import new_token

    new_token()  # the parent's random part exists before the fork
    tokens = [t for batch in processes(4, tokens_in_child) for t in batch]
    assert len(set(tokens)) == len(tokens) == 12
    assert len({t.rsplit(":", 1)[1][:12] for t in tokens}) == 4  # one random part each


def test_acquire_waits_as_long_as_the_handles_blocking_timeout(unique):
    """As redis-py's ``Lock.acquire()`` does; ``acquire(None)`` still waits for ever."""
    holding, letting_go = threading.Event(), threading.Event()

    def holder():
        with lock(unique, timeout=10):
            holding.set()
            letting_go.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(10)
        handle = lock(unique, blocking_timeout=0.3)
        started = time.monotonic()
        assert handle.acquire() is False  # before: waited until the holder let go
        assert 0.25 <= time.monotonic() - started < 5

        async def in_a_loop():
            return await lock(unique, blocking_timeout=0.3).aacquire()

        assert asyncio.run(in_a_loop()) is False
        letting_go.set()
        assert handle.acquire(None) is True
        handle.release()
    finally:
        letting_go.set()
        thread.join()


def test_a_lock_lost_at_extend_is_no_longer_held(unique):
    handle = lock(unique, timeout=10)
    handle.acquire()
    raw().delete(handle.keys.lock)  # expired, evicted, or taken over meanwhile
    with pytest.raises(LockLost):
        handle.extend()
    assert handle.held_for is None and current_lock() is None and handle.lost
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "garbage-collected while held" warning
        del handle
        gc.collect()
