"""Lock liveness under worker churn (issue 26): processes loop on one lock while one random
process is SIGKILLed every half second and replaced at once, as gunicorn or uWSGI replace a
worker killed on its timeout: one kill in as many as there are processes hits the holder (as
chance would), the others a process waiting in line.

Goals: acquisitions under churn >= 0.6x the same run without kills, and above redis-py's
``Lock`` (django-redis ``cache.lock``) under the same churn; a waiter killed in line costs the
next one < 0.2 s after the holder's release. Figures are medians of the runs in one
``make bench``.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import sys
import time

from _common import table
from django.core.cache import cache, close_caches

from cache_tools import lock
from cache_tools.testing.contract import FORK

TTL = 1.0
HOLD = 0.003
SECONDS = float(os.environ.get("CHURN_SECONDS", "8"))
KILL_EVERY = 0.5
RUNS = 3


def ours(name: str):
    return lock(name, timeout=TTL)


def redis_py(name: str):
    return cache.lock(name, timeout=TTL)


def _member(make, name, count, waits, holder, start):
    close_caches()
    start.wait()
    while True:
        asked = time.monotonic()
        with make(name):
            holder.value = os.getpid()
            with waits.get_lock():
                waits.value = max(waits.value, time.monotonic() - asked)
            time.sleep(HOLD)
        holder.value = 0
        with count.get_lock():
            count.value += 1


def churn(make, processes: int, kills: bool) -> tuple[int, float]:
    """Acquisitions in ``SECONDS``, and the longest single wait of a process that got in.

    A kill hits the holder as often as chance would (one in ``processes``), but on a fixed
    schedule: each one costs the lock its TTL under any design, and a random count of them
    would swamp the comparison. The others hit a random process waiting in line."""
    name = f"bench:churn:{os.getpid()}:{time.monotonic_ns()}"
    count, waits = FORK.Value("q", 0), FORK.Value("d", 0.0)
    holder, start = FORK.Value("q", 0), FORK.Event()
    choose = random.Random(26)

    def spawn() -> FORK.Process:  # type: ignore[name-defined]
        member = FORK.Process(target=_member, args=(make, name, count, waits, holder, start))
        member.start()
        return member

    members = [spawn() for _ in range(processes)]
    start.set()
    began = time.monotonic()
    next_kill, killed = began + KILL_EVERY, 0
    while (now := time.monotonic()) < began + SECONDS:
        if kills and now >= next_kill:
            killed += 1
            holding = holder.value
            hit_holder = killed % processes == processes // 2
            candidates = [m for m in members if (m.pid == holding) == hit_holder] or members
            victim = choose.choice(candidates)
            members.remove(victim)
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()
            members.append(spawn())
            next_kill += KILL_EVERY
        time.sleep(0.01)
    done = count.value
    for member in members:
        member.kill()
        member.join()
    return done, waits.value


def _waiting(name, ready, took):
    close_caches()
    ready.set()
    with lock(name, timeout=10, blocking_timeout=30):
        took.value = time.monotonic()


def dead_waiter_cost() -> float:
    """The holder keeps the lock 1 s while W1 and W2 wait; W1 is SIGKILLed; seconds from the
    holder's release to W2's entry."""
    name = f"bench:dead-waiter:{time.monotonic_ns()}"
    took = FORK.Value("d", 0.0)
    with lock(name, timeout=10):
        waiters = []
        for _ in range(2):
            ready = FORK.Event()
            waiter = FORK.Process(target=_waiting, args=(name, ready, took))
            waiter.start()
            ready.wait()
            time.sleep(0.3)  # let it queue (benchmark pacing)
            waiters.append(waiter)
        time.sleep(0.4)
        os.kill(waiters[0].pid, signal.SIGKILL)
        waiters[0].join()
        time.sleep(0.3)
        released = time.monotonic()
    waiters[1].join(30)
    return took.value - released


def main() -> None:
    processes = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rows = []
    for label, make in (("lock()", ours), ("redis-py Lock (cache.lock)", redis_py)):
        calm = [churn(make, processes, kills=False) for _ in range(RUNS)]
        churned = [churn(make, processes, kills=True) for _ in range(RUNS)]
        calm_count = statistics.median(c for c, _ in calm)
        churn_count = statistics.median(c for c, _ in churned)
        rows.append(
            (
                label,
                f"{calm_count:.0f}",
                f"{churn_count:.0f}",
                f"{churn_count / calm_count:.2f}",
                f"{max(w for _, w in churned):.2f}",
            )
        )
    table(
        f"Churn: {processes} processes on one lock ({TTL:g} s TTL, {HOLD * 1000:g} ms holds) "
        f"for {SECONDS:g} s, one random SIGKILL every {KILL_EVERY:g} s, replaced at once "
        f"(median of {RUNS} runs; goal >= 0.6x calm and above redis-py)",
        rows,
        ("what", "calm acquisitions", "churn acquisitions", "churn / calm", "worst wait s"),
    )
    costs = [dead_waiter_cost() for _ in range(3)]
    table(
        "A waiter SIGKILLed in line: seconds from the holder's release to the next waiter's "
        "entry (3 trials; goal < 0.2 s)",
        [("lock()", ", ".join(f"{c:.3f}" for c in costs))],
        ("what", "seconds"),
    )


if __name__ == "__main__":
    main()
