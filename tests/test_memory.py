"""Memory is bounded by bytes whatever the number of distinct names: lock names per object
(``lock(f"invoice:{id}")``, the seed's ``key_maker``) cost the process nothing once its key
caches are full, and the server keeps the counts of a bounded number of them, with no key per
name that outlives its lock by more than seconds."""

from __future__ import annotations

import gc
import time
import tracemalloc

import redis
from django.conf import settings
from django.test import override_settings

from cache_tools import lock, monitor, stats


def take(names):
    for name in names:
        with lock(name):
            pass
    stats.flush()
    gc.collect()


def test_a_process_taking_ever_new_lock_names_stays_within_its_bytes(unique):
    tracemalloc.start()  # before the caches fill: what they then drop is counted off too
    try:
        take(f"{unique}-warm:{n}" for n in range(6_000))  # the key caches are full from here on
        before = tracemalloc.get_traced_memory()[0]
        take(f"{unique}:{n}" for n in range(12_000))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, grown  # before: about 600 bytes a name, never given back


def test_the_server_keeps_a_bounded_record_of_released_lock_names(unique):
    client = redis.Redis.from_url(settings.REDIS_URL)
    namespace = f"mem{unique[:8]}"
    with override_settings(CACHE_TOOLS={"NAMESPACE": namespace}):
        take([f"warm-{unique}"])
        pattern = f"{settings.TEST_PREFIX}:1:{namespace}:*"
        keys_before = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
        memory_before = client.info("memory")["used_memory"]
        take(f"invoice:{unique}:{n}" for n in range(6_000))
        time.sleep(1.2)  # released locks' fences retire after a second
        keys_after = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
        grown = client.info("memory")["used_memory"] - memory_before
        assert keys_after - keys_before <= 2  # not one key per name (before: 6 000, for an hour)
        assert grown < 1_000_000, grown
        rows = [row for row in monitor.locks() if row.name.startswith(f"invoice:{unique}")]
        assert len(rows) == stats.LOCK_NAMES_KEPT  # the most recently used, with their counts
        assert {row.info.acquired for row in rows} == {1}
        assert f"invoice:{unique}:5999" in {row.name for row in rows}
