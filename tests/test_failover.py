"""Failover under load: the primary that serves a lock (or a cache-aside entry) is SIGKILLed
while processes contend for it, on a Redis Cluster with replicas and on a Sentinel group.

Redis replicates asynchronously, so a failover can lose a lock; what must hold is that no two
holders overlap unless one of them was told (``LockLost`` or ``handle.lost``), that fences
keep increasing across the failover, that callers recover once the group has promoted a
replica, and that nothing but the documented exceptions reaches them.

Each test starts a group of its own (the session's groups stay intact for other tests).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import caches, close_caches
from django.test import override_settings

from cache_tools import LockLost, LockUnavailable, cache_aside, lock
from cache_tools.backends import get_backend
from cache_tools.local_copies import tracker_for
from cache_tools.testing.contract import FORK, run_processes
from cache_tools.testing.groups import RedisCluster, RedisSentinel
from tests.conftest import cluster_cache, sentinel_caches

HERD = 6
RECOVERY_SLACK = 2.0  # seconds for clients to find the new primary once it is promoted


class Group:
    """A group to fail over: ``alias`` is a cache on it; ``key_of`` names the server key a
    lock name lives at; ``fail_over()`` kills the primary serving it and waits for the
    promotion."""

    def __init__(self, alias: str, fail_over: Callable[[str], None]) -> None:
        self.alias, self._fail_over = alias, fail_over

    def fail_over(self, server_key: str) -> None:
        self._fail_over(server_key)


@contextlib.contextmanager
def sentinel_group() -> Iterator[RedisSentinel]:
    """A fresh Sentinel group with both Sentinel aliases on it, checked to write to its
    primary (not to a pool the client library kept from another group)."""
    with (
        RedisSentinel(replicas=1, down_after=1000) as sentinel,
        override_settings(CACHES={**settings.CACHES, **sentinel_caches(sentinel)}),
    ):
        primary = redis.Redis(port=sentinel.primary_port())
        for alias in ("redis-sentinel", "valkey-sentinel"):
            # The probe itself, not a key count: statistics may be flushed meanwhile.
            caches[alias].set(f"probe-{alias}", 1)
            probe = caches[alias].make_key(f"probe-{alias}")
            assert primary.exists(str(probe)), f"{alias} does not write to this group"
        primary.close()
        yield sentinel


@pytest.fixture(params=["cluster", "redis-sentinel", "valkey-sentinel"])
def group(request: pytest.FixtureRequest) -> Iterator[Group]:
    if request.param == "cluster":
        with RedisCluster(primaries=3, replicas=1, node_timeout=1000) as cluster:
            caches = {**settings.CACHES, "failover": cluster_cache(cluster)}
            with override_settings(CACHES=caches):

                def kill_primary(key: str) -> None:
                    cluster.kill(cluster.primary_of(key))

                yield Group("failover", kill_primary)
    else:
        with sentinel_group() as sentinel:
            yield Group(request.param, lambda key: sentinel.fail_over())


def run_herd(group: Group, worker: Callable[..., Any], key: str, *args: Any) -> dict[str, Any]:
    """Run ``worker(alias, stop, results, *args)`` in HERD processes; kill ``key``'s primary
    after a second of load and stop the herd 3 s after the promotion."""
    stop, results = FORK.Event(), FORK.Queue()
    children = [
        FORK.Process(target=worker, args=(group.alias, stop, results, *args)) for _ in range(HERD)
    ]
    for child in children:
        child.start()
    time.sleep(1.0)  # the herd is at work on the old primary
    killed = time.monotonic()
    group.fail_over(key)
    promoted = time.monotonic()
    time.sleep(3.0)  # and at work on the new one
    stop.set()
    reports = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    return {"killed": killed, "promoted": promoted, "reports": reports}


def lock_worker(alias: str, stop: Any, results: Any, name: str) -> None:
    close_caches()
    sections, failures, unexpected = [], [], []
    while not stop.is_set():
        handle = lock(name, cache=alias, timeout=2)
        try:
            if not handle.acquire(blocking_timeout=3):
                failures.append((time.monotonic(), "timed out"))
                continue
        except LockUnavailable:
            failures.append((time.monotonic(), "unavailable"))
            time.sleep(0.05)
            continue
        except Exception as exc:
            unexpected.append(repr(exc))
            continue
        entered = time.monotonic()
        time.sleep(random.uniform(0, 0.01))  # the guarded work
        left = time.monotonic()
        lost = handle.lost
        try:
            handle.release()
        except LockLost:
            lost = True
        except Exception as exc:
            unexpected.append(repr(exc))
        sections.append((entered, left, handle.fence, lost))
    results.put({"sections": sections, "failures": failures, "unexpected": unexpected})


def test_a_lock_herd_survives_the_primary_being_killed(group: Group, unique: str) -> None:
    key = get_backend(group.alias)._lock_keys(unique).lock
    run = run_herd(group, lock_worker, key, unique)
    reports = run["reports"]
    assert [r["unexpected"] for r in reports] == [[]] * HERD
    sections = sorted(s for r in reports for s in r["sections"])
    before = [s for s in sections if s[0] < run["killed"]]
    after = [s for s in sections if s[0] > run["promoted"]]
    assert before and after, (len(before), len(after))

    # No overlap where neither holder learned it lost the lock.
    for index, (_, leave1, fence1, lost1) in enumerate(sections):
        for enter2, _, fence2, lost2 in sections[index + 1 :]:
            if enter2 >= leave1:
                break
            assert lost1 or lost2, ("overlap", fence1, fence2)
    # Fences strictly increase in the order the sections began, across the failover.
    fences = [s[2] for s in sections]
    assert all(a < b for a, b in itertools.pairwise(fences)), "a fence went back"
    # Callers recover: nothing fails once the promotion is known plus the clients' slack.
    failures = [t for r in reports for t, _ in r["failures"]]
    assert all(t < run["promoted"] + RECOVERY_SLACK for t in failures)
    first_after = min(s[0] for s in after)
    assert first_after - run["promoted"] < RECOVERY_SLACK
    last_failure = max(failures, default=run["killed"])
    print(  # the figures of docs/scaling.rst (pytest -s)
        f"\n{group.alias}: promoted {run['promoted'] - run['killed']:.2f} s after the kill, "
        f"first lock {first_after - run['promoted']:.2f} s after the promotion, last failure "
        f"{last_failure - run['promoted']:+.2f} s, {len(sections)} sections, "
        f"{sum(s[3] for s in sections)} told lost"
    )


def cached_square(alias: str, unique: str) -> Any:
    @cache_aside(cache=alias, timeout=60, key_maker=f"{unique}:{{x}}")
    def square(x: int) -> int:
        time.sleep(0.005)
        return x * x

    return square


def aside_worker(alias: str, stop: Any, results: Any, unique: str) -> None:
    close_caches()
    square = cached_square(alias, unique)

    wrong, unexpected, calls = [], [], []
    while not stop.is_set():
        x = random.randrange(20)
        try:
            if square(x) != x * x:
                wrong.append(x)
        except Exception as exc:  # the documented behaviour: compute without the cache
            unexpected.append(repr(exc))
        calls.append(time.monotonic())
    info = square.cache_info()
    results.put(
        {"wrong": wrong, "unexpected": unexpected, "calls": len(calls), "info": tuple(info)}
    )


def test_a_cache_aside_herd_survives_the_primary_being_killed(group: Group, unique: str) -> None:
    key = cached_square(group.alias, unique).cache_key(1)  # a function's entries share a slot
    run = run_herd(group, aside_worker, key, unique)
    reports = run["reports"]
    assert [r["unexpected"] for r in reports] == [[]] * HERD
    assert [r["wrong"] for r in reports] == [[]] * HERD
    hits = sum(r["info"][0] for r in reports)
    assert hits > 10 * HERD  # served from the cache before and after the failover


def invalidate_in_child(index: int, barrier: Any, alias: str, unique: str) -> None:
    counted_copy(alias, unique, []).invalidate(1)


def counted_copy(alias: str, unique: str, calls: list[int]) -> Any:
    @cache_aside(cache=alias, timeout=60, local=True, key_maker=f"{unique}:{{x}}")
    def counted(x: int) -> int:
        calls.append(x)
        return len(calls)

    return counted


@pytest.mark.parametrize("alias", ["redis-sentinel", "valkey-sentinel"])
def test_local_copies_follow_a_sentinel_failover(alias: str, unique: str) -> None:
    """Copies kept before a failover are dropped (the new primary may lack the entry), and
    invalidations reach this process from the promoted replica."""
    with sentinel_group() as sentinel:
        calls: list[int] = []
        counted = counted_copy(alias, unique, calls)
        tracker = tracker_for(get_backend(alias))
        assert tracker is not None and tracker.wait_until_ready(10)
        assert counted(1) == 1  # computed
        deadline = time.monotonic() + 5
        while counted.cache_info().local_hits == 0:  # our own store's invalidation arrives
            assert counted(1) == 1 and time.monotonic() < deadline  # read, copied, served
        epoch = tracker.epoch
        sentinel.fail_over()
        assert tracker.wait_until_ready(10)  # listening to the promoted replica
        assert tracker.epoch > epoch  # every copy was dropped on the way
        counted(1)  # from the new primary (or computed again if it lacked the entry)
        computed = len(calls)
        run_processes(1, invalidate_in_child, alias, unique)  # another process's connection
        deadline = time.monotonic() + 5
        while counted(1) == computed and time.monotonic() < deadline:
            pass  # each call reads the copy until the invalidation drops it
        assert len(calls) == computed + 1
