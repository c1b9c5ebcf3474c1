"""Throughput (issue 16): hits per second from 8 processes x 4 threads over 1 000 warm keys,
for a raw ``cache.get``, ``cache_aside``, django-cache-memoize and dogpile.cache, each in the
same run, plus the server's key count after a short soak (every entry expired).

Goal: cache_aside >= 0.90x raw ``cache.get``. Three runs of each; the table shows the median
and the range. On a 2-core machine the 32 threads contend for the CPU with Redis: the ratio,
not the absolute figure, is what carries over.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid

from _common import table
from bench_cache_aside import dogpile_region
from bench_lock import FORK
from cache_memoize import cache_memoize
from django.core.cache import cache, close_caches
from django.core.management import call_command

from cache_tools import cache_aside, lock
from cache_tools.backends import get_backend

PROCESSES, THREADS, KEYS, SECONDS, RUNS = 8, 4, 1000, 2.0, 3
VALUE = "x" * 100
RUN = uuid.uuid4().hex[:8]


@cache_aside(timeout=600)
def aside(n: int) -> str:
    return VALUE


@cache_memoize(600)
def memoize(n: int) -> str:
    return VALUE


_regions: list = []


def dogpile(n: int) -> str:
    if not _regions:
        _regions.append(dogpile_region())
    return _regions[0].get_or_create(f"bench:{RUN}:dp:{n}", lambda: VALUE)


def raw(n: int) -> str:
    return cache.get(f"bench:{RUN}:raw:{n}")


VARIANTS = {"raw cache.get": raw, "cache_aside": aside, "django-cache-memoize": memoize}
VARIANTS["dogpile.cache"] = dogpile


def warm() -> None:
    for n in range(KEYS):
        cache.set(f"bench:{RUN}:raw:{n}", VALUE, 600)
        for function in (aside, memoize, dogpile):
            function(n)


def _process(name: str, barrier, results) -> None:
    close_caches()
    _regions.clear()
    function = VARIANTS[name]
    function(0)  # connect before the clock starts
    counts = [0] * THREADS
    start = threading.Barrier(THREADS + 1)

    def thread(index: int) -> None:
        keys = random.Random(index).choices(range(KEYS), k=4096)
        start.wait()
        until = time.monotonic() + SECONDS
        done = 0
        while time.monotonic() < until:
            for n in keys[:64]:
                function(n)
            done += 64
            keys = keys[64:] + keys[:64]
        counts[index] = done

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    start.wait()
    for t in threads:
        t.join()
    results.put(sum(counts))


def throughput(name: str) -> float:
    barrier, results = FORK.Barrier(PROCESSES), FORK.Queue()
    members = [
        FORK.Process(target=_process, args=(name, barrier, results)) for _ in range(PROCESSES)
    ]
    for member in members:
        member.start()
    total = sum(results.get(timeout=60) for _ in members)
    for member in members:
        member.join()
    return total / SECONDS


def _soaker(index: int, until: float, keys: int) -> None:
    close_caches()

    @cache_aside(timeout=2, key_maker="soak:{n}")
    def entry(n: int) -> int:
        return n

    rng = random.Random(index)
    while time.monotonic() < until:
        entry(rng.randrange(keys))
        with lock(f"soak:{rng.randrange(100)}", timeout=5):
            pass


def soak(seconds: float = 10.0, processes: int = 4, keys: int = 5000) -> tuple[int, int]:
    """Keys of the namespace during the soak and after every entry and lock expired (the
    namespace is emptied first: the throughput runs' entries live for 10 minutes)."""
    call_command("clear_cache", verbosity=0)
    backend = get_backend()
    pattern = backend.namespace_pattern("ct:*")
    client = backend.client()
    until = time.monotonic() + seconds
    members = [FORK.Process(target=_soaker, args=(i, until, keys)) for i in range(processes)]
    for member in members:
        member.start()
    for member in members:
        member.join()
    during = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    time.sleep(7)  # the longest TTL written: entry 2 s, lock 5 s (plus the expiry sweep)
    after = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    return during, after


def main() -> None:
    warm()
    runs = {name: [throughput(name) for _ in range(RUNS)] for name in VARIANTS}
    baseline = statistics.median(runs["raw cache.get"])
    rows = []
    for name, values in runs.items():
        ratios = [v / baseline for v in values]
        rows.append(
            (
                name,
                f"{statistics.median(values):,.0f}",
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
            )
        )
    table(
        f"Throughput: {PROCESSES} processes x {THREADS} threads, {KEYS} warm keys "
        f"({RUNS} runs of {SECONDS:g} s; median and range)",
        rows,
        ("what", "hits/s", "x raw cache.get"),
    )
    during, after = soak()
    table(
        "Soak: 4 processes for 10 s, 5 000 cache_aside keys (timeout=2), locks on 100 names",
        [("keys in the namespace at the end", str(during)), ("after every TTL passed", str(after))],
        ("what", "keys"),
    )


if __name__ == "__main__":
    main()
