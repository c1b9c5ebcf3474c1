"""Lock benchmark: uncontended cost, hand-off latency, and a herd, against django-redis's lock.

Goals (issues 3 and 16): acquire+release <= 2.05x one raw ``cache.get`` (median of interleaved
rounds); hand-off p50 <= 2 ms and p99 <= 10 ms; 20 processes x 5 ms critical sections in
<= 130 ms. Fairness (issue 18): 5
processes that re-acquire at once after a 50 ms hold each get a fifth of the acquisitions, and
nobody waits longer than the four others' holds (FCFS bound 0.2 s).
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import time
import uuid

import redis_lock
from _common import interleaved, per_round, percentile, table
from django.core.cache import cache
from django_redis import get_redis_connection

from cache_tools import lock

FORK = multiprocessing.get_context("fork")
HANDOFFS = 60
UNCONTENDED_ROUNDS = 41
HERD = 20
HOLD = 0.005
FAIR_PROCESSES = 5
FAIR_HOLD = 0.05
FAIR_SECONDS = 4.0


def ours(name: str):
    return lock(name, timeout=10)


def django_redis(name: str):
    return cache.lock(name, timeout=10)


def python_redis_lock(name: str):
    """python-redis-lock: the same design (a release signal waiters block on), no fencing."""
    return redis_lock.Lock(get_redis_connection(), name, expire=10)


PEERS = (
    ("lock()", ours),
    ("django-redis cache.lock() (redis-py Lock)", django_redis),
    ("python-redis-lock", python_redis_lock),
)


def uncontended() -> list[tuple[str, ...]]:
    """Interleaved rounds (a raw get and each lock, in a new order each round), so that every
    ratio is taken against a baseline measured in the same moments; the median ratio and its
    range over the rounds."""
    cache.set("bench:value", "x" * 100)
    name = f"bench:{uuid.uuid4().hex}"

    def ours_once():
        with lock(name, timeout=10):
            pass

    def theirs_once():
        with cache.lock(name + ":dr", timeout=10):
            pass

    def python_redis_lock_once():
        with python_redis_lock(name + ":prl"):
            pass

    variants = {
        "raw cache.get": lambda: cache.get("bench:value"),
        "lock()": ours_once,
        "django-redis cache.lock() (redis-py Lock)": theirs_once,
        "python-redis-lock": python_redis_lock_once,
    }
    samples = interleaved(variants, UNCONTENDED_ROUNDS, 300)
    rows = []
    for label, seconds in samples.items():
        to_get = per_round(samples, label, "raw cache.get")
        to_redis_py = per_round(samples, label, "django-redis cache.lock() (redis-py Lock)")
        rows.append(
            (
                label,
                f"{statistics.median(seconds) * 1e6:.0f}",
                f"{statistics.median(to_get):.2f}",
                f"{min(to_get):.2f}-{max(to_get):.2f}",
                f"{statistics.median(to_redis_py):.2f}",
            )
        )
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
        # Let the waiter block; a random hold, so that releases do not land at the same point
        # of a polling waiter's cycle every time (benchmark pacing, not synchronisation).
        time.sleep(random.uniform(0.02, 0.12))
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


def _barging_member(make, name, barrier, results, until):
    with make(f"{name}:warm-up:{uuid.uuid4().hex}"):
        pass
    barrier.wait()
    waits = []
    while time.monotonic() < until:
        asked = time.monotonic()
        with make(name):
            waits.append(time.monotonic() - asked)
            time.sleep(FAIR_HOLD)
        # no think time: ask again at once, racing the waiter just woken
    results.put(waits)


def fairness(make) -> tuple[list[int], float]:
    """Acquisitions per process and the longest single wait, with barging re-acquirers."""
    name = f"bench:fair:{uuid.uuid4().hex}"
    barrier, results = FORK.Barrier(FAIR_PROCESSES), FORK.Queue()
    until = time.monotonic() + 1 + FAIR_SECONDS
    members = [
        FORK.Process(target=_barging_member, args=(make, name, barrier, results, until))
        for _ in range(FAIR_PROCESSES)
    ]
    for member in members:
        member.start()
    collected = [results.get(timeout=60) for _ in members]
    for member in members:
        member.join()
    return sorted(len(waits) for waits in collected), max(max(w) for w in collected if w)


def main() -> None:
    table(
        f"Uncontended acquire + release ({UNCONTENDED_ROUNDS} interleaved rounds; goal <= 2.05x)",
        uncontended(),
        ("what", "us/op", "x raw get", "range", "x redis-py Lock"),
    )
    rows = []
    for label, make in PEERS:
        latencies = handoff(make)
        rows.append(
            (
                label,
                f"{percentile(latencies, 0.5) * 1000:.2f}",
                f"{percentile(latencies, 0.99) * 1000:.2f}",
            )
        )
    table(
        f"Hand-off latency, {HANDOFFS} releases after random holds of 20-120 ms",
        rows,
        ("what", "p50 ms", "p99 ms"),
    )
    rows = []
    for label, make in PEERS:
        totals = [herd(make) for _ in range(3)]
        rows.append((label, f"{statistics.median(totals) * 1000:.0f}"))
    table(
        f"Herd: {HERD} processes x {HOLD * 1000:.0f} ms each (median of 3 runs; "
        f"ideal {HERD * HOLD * 1000:.0f} ms)",
        rows,
        ("what", "total ms"),
    )
    rows = []
    for label, make in PEERS:
        counts, worst = fairness(make)
        total = sum(counts)
        rows.append(
            (
                label,
                str(total),
                f"{100 * counts[0] / total:.0f}-{100 * counts[-1] / total:.0f}",
                f"{worst:.2f}",
            )
        )
    table(
        f"Fairness: {FAIR_PROCESSES} processes re-acquiring at once after a "
        f"{FAIR_HOLD * 1000:.0f} ms hold, {FAIR_SECONDS:g} s (FCFS: 20% each, worst wait "
        f"{(FAIR_PROCESSES - 1) * FAIR_HOLD:.2f} s)",
        rows,
        ("what", "acquisitions", "share % min-max", "worst wait s"),
    )


if __name__ == "__main__":
    main()
