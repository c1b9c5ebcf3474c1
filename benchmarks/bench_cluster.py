"""Cluster benchmark (issue 15): a cache_aside hit, a lock cycle and a lock hand-off on a
ClusterValkeyCache alias (a local 3-primary Redis Cluster), each against a raw ``cache.get`` on
the same alias in the same run; the single Redis of ``make bench`` alongside for scale.

Three runs of 30 short interleaved rounds each; the table shows the median ratio over the three
runs and their range.
"""

from __future__ import annotations

import statistics
import uuid

from _common import per_call, percentile, table
from bench_lock import handoff
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from cache_tools import cache_aside, lock
from cache_tools.testing.groups import RedisCluster

ROUNDS = 3


def measure(alias: str) -> dict[str, float]:
    """Seconds per raw get, and hit and lock cycle as multiples of it, from short interleaved
    rounds (drift on a shared machine hits all three alike)."""
    cache = caches[alias]
    cache.set("bench:value", "x" * 100)
    name = f"bench:{uuid.uuid4().hex}"

    @cache_aside(cache=alias, timeout=600, key_maker="bench-hit")
    def hot() -> str:
        return "x" * 100

    def cycle() -> None:
        with lock(name, cache=alias, timeout=10):
            pass

    hot()
    samples: dict[str, list[float]] = {"get": [], "hit": [], "lock": []}
    for _ in range(30):
        samples["get"].append(per_call(lambda: cache.get("bench:value"), 200, 1))
        samples["hit"].append(per_call(hot, 200, 1))
        samples["lock"].append(per_call(cycle, 100, 1))
    get = statistics.median(samples["get"])
    return {
        "get": get,
        "hit": statistics.median(samples["hit"]) / get,
        "lock": statistics.median(samples["lock"]) / get,
    }


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    with RedisCluster(primaries=3) as cluster:
        alias = {
            "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
            "LOCATION": f"valkey://127.0.0.1:{cluster.startup_nodes[0][1]}",
            "KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
        }
        with override_settings(CACHES={**settings.CACHES, "cluster": alias}):
            runs = {name: [measure(name) for _ in range(ROUNDS)] for name in ("cluster", "default")}

            def make(lock_name: str):
                return lock(lock_name, cache="cluster", timeout=10)

            latencies = handoff(make)
    rows = []
    for name, label in (("cluster", "ClusterValkeyCache"), ("default", "django-redis, one Redis")):
        got = runs[name]
        rows.append(
            (
                label,
                f"{statistics.median(r['get'] for r in got) * 1e6:.0f}",
                summary([r["hit"] for r in got]),
                summary([r["lock"] for r in got]),
            )
        )
    table(
        "Hit and lock cycle, x raw cache.get on the same alias (median, range of 3 runs)",
        rows,
        ("alias", "raw get us", "cache_aside hit", "lock cycle"),
    )
    table(
        f"Lock hand-off on the cluster ({len(latencies)} releases to a blocked waiter)",
        [
            (
                f"{percentile(latencies, 0.5) * 1e3:.2f}",
                f"{percentile(latencies, 0.99) * 1e3:.2f}",
            )
        ],
        ("p50 ms", "p99 ms"),
    )


if __name__ == "__main__":
    main()
