"""Load benchmark against the test project under uWSGI (4 workers x 2 threads).

The load comes from this process (a thread pool of HTTP clients), uWSGI runs in its own
processes. Goals (issue 6): a cache_aside hit view serves >= 0.9x the requests/s of a view doing
one raw ``cache.get``; a cold ``/demo/report`` under 64 concurrent clients computes once.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import percentile, table
from django.conf import settings
from django.core.cache import cache

from testproject.uwsgi_site import start_site, stop_site

CLIENTS = 16
SECONDS = 3.0


def get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
    return time.perf_counter() - started


def load(url: str, clients: int = CLIENTS, seconds: float = SECONDS) -> tuple[float, float]:
    """Requests per second and p99 latency (s) of ``clients`` looping on ``url``."""
    started = time.monotonic()
    ends = started + seconds

    def client(_: int) -> list[float]:
        latencies = []
        while time.monotonic() < ends:
            latencies.append(get(url))
        return latencies

    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for per_client in pool.map(client, range(clients)) for x in per_client]
    # Requests still running at the end are counted, so divide by when the last one finished.
    return len(latencies) / (time.monotonic() - started), percentile(latencies, 0.99)


def main() -> None:
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    with tempfile.TemporaryDirectory() as tmp:
        site = start_site(Path(tmp), "preforked", prefix, settings.REDIS_URL)
        try:
            cache.set("demo:raw:1", {"n": 1, "square": 1}, None)
            get(f"{site.url}/demo/compute/1")  # fill the cache_aside entry
            for _ in range(20):  # fill, then let every worker keep its copy
                get(f"{site.url}/demo/compute-local/1")
            rows = []
            rounds: dict[str, list[tuple[float, float]]] = {"raw": [], "aside": [], "local": []}
            for _ in range(3):  # interleaved, so drift on a shared machine hits all alike
                rounds["raw"].append(load(f"{site.url}/demo/raw/1"))
                rounds["aside"].append(load(f"{site.url}/demo/compute/1"))
                rounds["local"].append(load(f"{site.url}/demo/compute-local/1"))
            raw_rps = statistics.median(r[0] for r in rounds["raw"])
            views = (
                ("raw cache.get view", "raw"),
                ("cache_aside hit view", "aside"),
                ("cache_aside(local=True) view", "local"),
            )
            for label, key in views:
                rps = statistics.median(r[0] for r in rounds[key])
                p99 = statistics.median(r[1] for r in rounds[key])
                rows.append((label, f"{rps:.0f}", f"{rps / raw_rps:.2f}", f"{p99 * 1000:.1f}"))
            rps, p99 = load(f"{site.url}/demo/stats/x", clients=8)
            rows.append(
                ("/demo/stats/x (serialised, 100 ms)", f"{rps:.1f}", "", f"{p99 * 1000:.0f}")
            )
            table(
                f"{CLIENTS} clients for {SECONDS:.0f} s each (median of 3 interleaved runs)",
                rows,
                ("view", "req/s", "x raw", "p99 ms"),
            )
            print(
                f"lock hand-off overhead per serialised request: "
                f"{(1 / rps - 0.1) * 1000:.1f} ms (ideal 0; the calculation holds the lock 100 ms)"
            )

            before = int(cache.get("demo:report-computations") or 0)
            run = uuid.uuid4().hex
            with ThreadPoolExecutor(64) as pool:
                latencies = list(pool.map(get, [f"{site.url}/demo/report?run={run}"] * 64))
            computations = int(cache.get("demo:report-computations") or 0) - before
            table(
                "Cold /demo/report, 64 concurrent clients (the report takes 200 ms)",
                [(str(computations), f"{percentile(latencies, 0.99) * 1000:.0f}")],
                ("computations", "p99 ms"),
            )
        finally:
            stop_site(site)


if __name__ == "__main__":
    main()
