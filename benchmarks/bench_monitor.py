"""What a site with many functions and per-object locks costs to look at (issue 26): 5 000
cached functions and 100 000 lock names used once each; the dashboard, its JSON, ``manage.py
cache_stats`` and a Prometheus scrape, each timed (goal: < 1 s), and the server's memory for
the lock names (goal: < 2 MB for 60 000 released names).
"""

from __future__ import annotations

import io
import statistics
import time
import uuid
from collections import Counter

from _common import table
from django.core.management import call_command
from django.test import RequestFactory, override_settings
from django_redis import get_redis_connection
from prometheus_client import CollectorRegistry, generate_latest

from cache_tools import lock, stats
from cache_tools.backends import get_backend
from cache_tools.contrib.prometheus import CacheToolsCollector
from cache_tools.dashboard import dashboard, dashboard_json

FUNCTIONS = 5_000
LOCK_NAMES = 100_000
RELEASED = 60_000
ROUNDS = 3


def staff():
    from django.contrib.auth.models import User

    return User(username="bench", is_staff=True, is_superuser=True, is_active=True)


def populate() -> None:
    """5 000 functions with counts (written as the flusher writes them), 100 000 lock names."""
    backend = get_backend()
    counts = {
        backend.stats_key(f"site.module{n // 100}.function{n}"): Counter(hits=n, misses=1)
        for n in range(FUNCTIONS)
    }
    backend.add_counts(counts)
    names = {f"site.module{n // 100}.function{n}": time.time() for n in range(FUNCTIONS)}
    backend.note_names(backend.registry_key("functions"), names, keep=10_000)
    for start in range(0, LOCK_NAMES, 5_000):
        batch = {f"invoice:{n}": {"acquired": 1} for n in range(start, start + 5_000)}
        backend.add_lock_counts(batch, stats.LOCK_FIELDS, stats.LOCK_NAMES_KEPT, 3600)


def timed(function) -> tuple[float, int]:
    """Median seconds over ``ROUNDS`` calls, and the size of what the last one produced."""
    seconds, size = [], 0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        size = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), size


def page() -> int:
    request = RequestFactory().get("/cache-tools/")
    request.user = staff()
    return len(dashboard(request, template_name="cache_tools/dashboard.html").content)


def json_page() -> int:
    request = RequestFactory().get("/cache-tools/stats.json")
    request.user = staff()
    return len(dashboard_json(request).content)


def command() -> int:
    out = io.StringIO()
    call_command("cache_stats", stdout=out)
    return len(out.getvalue())


def scrape() -> int:
    registry = CollectorRegistry()
    registry.register(CacheToolsCollector())
    return len(generate_latest(registry))


def released_names_memory() -> float:
    """MB the server gains for 60 000 lock names taken and released once each."""
    client = get_redis_connection()
    name = uuid.uuid4().hex[:8]
    stats.flush()
    before = client.info("memory")["used_memory"]
    for n in range(RELEASED):
        with lock(f"memory-{name}:{n}"):
            pass
    stats.flush()
    time.sleep(1.5)  # released locks' fences retire after a second
    return (client.info("memory")["used_memory"] - before) / 1e6


def main() -> None:
    with override_settings(CACHE_TOOLS={"NAMESPACE": f"mon{uuid.uuid4().hex[:6]}"}):
        populate()
        rows = []
        for label, function in (
            ("dashboard (HTML)", page),
            ("stats.json", json_page),
            ("manage.py cache_stats", command),
            ("Prometheus scrape", scrape),
        ):
            seconds, size = timed(function)
            rows.append((label, f"{seconds:.3f}", f"{size / 1e6:.2f}"))
        table(
            f"Looking at {FUNCTIONS:,} functions and {LOCK_NAMES:,} lock names (median of "
            f"{ROUNDS}; goal < 1 s each)",
            rows,
            ("what", "seconds", "MB produced"),
        )
        table(
            f"Server memory for {RELEASED:,} lock names taken and released once each (goal < 2 MB)",
            [("lock()", f"{released_names_memory():.2f} MB")],
            ("what", "grew by"),
        )


if __name__ == "__main__":
    main()
