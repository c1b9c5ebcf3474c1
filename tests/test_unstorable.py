"""Results that cannot be stored (unpicklable, or None with ``cache_none=False``) do not queue
their callers behind each other: waiters are released at once and compute side by side, and
waiters of the computing process take its result."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from django.conf import settings

from cache_tools import cache_aside

COMPUTING = 0.5


def raw() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def journal(name: str) -> str:
    return f"{settings.TEST_PREFIX}:unstorable:{name}"


@cache_aside(timeout=60, key_maker=lambda name, kind: (name, kind), cache_none=False)
def unstorable(name, kind):
    began = time.monotonic()
    time.sleep(COMPUTING)
    raw().rpush(journal(name), f"{began} {time.monotonic()}")
    return threading.Lock() if kind == "unpicklable" else None


def call_together(index, barrier, name, kind):
    barrier.wait()
    started = time.monotonic()
    unstorable(name, kind)
    return time.monotonic() - started


def computations(name):
    return [tuple(map(float, entry.split())) for entry in raw().lrange(journal(name), 0, -1)]


@pytest.mark.parametrize("kind", ["unpicklable", "none"])
def test_waiters_in_other_processes_compute_side_by_side(processes, unique, kind):
    took = processes(6, call_together, unique, kind)
    first, *others = sorted(computations(unique))
    assert len(others) == 5
    assert all(began >= first[1] for began, _ in others)  # they waited for the first ...
    assert max(began for began, _ in others) < min(ended for _, ended in others)  # ... not in turn
    print(f"{kind}: slowest of 6 callers {max(took):.2f} s (before: 3.0 s)")


def test_waiters_in_the_computing_process_take_its_result(unique):
    from tests.test_locks import blocked_clients, wait_until_blocked

    blocked, computed, results = blocked_clients(), [], []

    @cache_aside(timeout=60, key_maker=lambda: unique)
    def unpicklable():
        computed.append(1)
        # Until the five others wait for this very computation (blocked on the server: a
        # thread that came after it ended would compute anew, and rightly so).
        wait_until_blocked(blocked + 5)
        return threading.Lock()

    threads = [threading.Thread(target=lambda: results.append(unpicklable())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(computed) == 1
    assert len(results) == 6 and len({id(result) for result in results}) == 1


def test_a_later_storable_result_is_stored_and_served_again(unique):
    calls = []

    @cache_aside(timeout=60, key_maker=lambda: unique, cache_none=False)
    def sometimes():
        calls.append(1)
        return None if len(calls) == 1 else "found"

    assert sometimes() is None
    assert sometimes() == "found"  # computed without the lock a moment, stored all the same
    assert sometimes() == "found" and len(calls) == 2
