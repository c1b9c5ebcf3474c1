"""Lock benchmark: uncontended cost, hand-off latency, and a herd, against django-redis's lock.

Goals (issue 3): acquire+release <= 2.2x one raw ``cache.get``; hand-off p50 <= 2 ms and
p99 <= 10 ms; 20 processes x 5 ms critical sections in <= 130 ms.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
import uuid

from _common import per_call, percentile, table
from django.core.cache import cache

from cache_tools import lock

FORK = multiprocessing.get_context("fork")
HANDOFFS = 60
HERD = 20
HOLD = 0.005


def ours(name: str):
    return lock(name, timeout=10)


def django_redis(name: str):
    return cache.lock(name, timeout=10)


def uncontended() -> list[tuple[str, ...]]:
    cache.set("bench:value", "x" * 100)
    baseline = per_call(lambda: cache.get("bench:value"))
    name = f"bench:{uuid.uuid4().hex}"

    def ours_once():
        with lock(name, timeout=10):
            pass

    def theirs_once():
        with cache.lock(name + ":dr", timeout=10):
            pass

    rows = [("raw cache.get", f"{baseline * 1e6:.0f}", "1.00")]
    for label, function in (("lock()", ours_once), ("django-redis cache.lock()", theirs_once)):
        seconds = per_call(function, calls=1000)
        rows.append((label, f"{seconds * 1e6:.0f}", f"{seconds / baseline:.2f}"))
    return rows


def _waiter(make, name, ready, results, rounds):
    for _ in range(rounds):
        ready.wait()
        with make(name):
            results.put(time.monotonic())


def handoff(make) -> list[float]:
    """Latency from the holder's release call to the waiter's entry, one waiter blocked."""
    name = f"bench:handoff:{uuid.uuid4().hex}"
    ready, results = FORK.Event(), FORK.Queue()
    waiter = FORK.Process(target=_waiter, args=(make, name, ready, results, HANDOFFS))
    waiter.start()
    latencies = []
    for _ in range(HANDOFFS):
        handle = make(name)
        handle.__enter__()
        ready.set()
        time.sleep(0.03)  # let the waiter block (benchmark pacing, not synchronisation)
        ready.clear()
        released = time.monotonic()
        handle.__exit__(None, None, None)
        latencies.append(results.get(timeout=10) - released)
    waiter.join()
    return latencies


def _herd_member(make, name, barrier, done, finish):
    with make(f"{name}:warm-up:{uuid.uuid4().hex}"):
        pass  # connect first: a herd hits running workers, not freshly forked ones
    barrier.wait()
    with make(name):
        time.sleep(HOLD)
    done.put(time.monotonic())
    finish.wait()  # exit only after the herd, so process teardown does not steal CPU from it


def herd(make) -> float:
    name = f"bench:herd:{uuid.uuid4().hex}"
    barrier, done, finish = FORK.Barrier(HERD + 1), FORK.Queue(), FORK.Event()
    members = [
        FORK.Process(target=_herd_member, args=(make, name, barrier, done, finish))
        for _ in range(HERD)
    ]
    for member in members:
        member.start()
    barrier.wait()
    started = time.monotonic()
    finished = max(done.get(timeout=60) for _ in members)
    finish.set()
    for member in members:
        member.join()
    return finished - started


def main() -> None:
    table("Uncontended acquire + release", uncontended(), ("what", "us/op", "x raw get"))
    rows = []
    for label, make in (("lock()", ours), ("django-redis cache.lock()", django_redis)):
        latencies = handoff(make)
        rows.append(
            (
                label,
                f"{percentile(latencies, 0.5) * 1000:.2f}",
                f"{percentile(latencies, 0.99) * 1000:.2f}",
            )
        )
    table(f"Hand-off latency, {HANDOFFS} releases", rows, ("what", "p50 ms", "p99 ms"))
    rows = []
    for label, make in (("lock()", ours), ("django-redis cache.lock()", django_redis)):
        totals = [herd(make) for _ in range(3)]
        rows.append((label, f"{statistics.median(totals) * 1000:.0f}"))
    table(
        f"Herd: {HERD} processes x {HOLD * 1000:.0f} ms each (median of 3 runs; "
        f"ideal {HERD * HOLD * 1000:.0f} ms)",
        rows,
        ("what", "total ms"),
    )


if __name__ == "__main__":
    main()
