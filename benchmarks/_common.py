"""Helpers shared by the benchmark scripts: Django set-up, timing, and a table printer.

Run the scripts through ``make bench``, which starts a real Redis unless ``REDIS_URL`` is set.
Figures are medians over several rounds, compared with a baseline measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ.setdefault("CACHE_KEY_PREFIX", f"bench-{uuid.uuid4().hex[:8]}")

import django

django.setup()


def per_call(function: Callable[[], object], calls: int = 2000, rounds: int = 7) -> float:
    """Median over ``rounds`` of the mean seconds per call of ``function``."""
    for _ in range(calls // 10):
        function()  # warm up connections and script caches
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            function()
        samples.append((time.perf_counter() - started) / calls)
    return statistics.median(samples)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
