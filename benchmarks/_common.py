"""Helpers shared by the benchmark scripts: Django set-up, timing, and a table printer.

Run the scripts through ``make bench``, which starts a real Redis unless ``REDIS_URL`` is set.
Figures are medians over several rounds, compared with a baseline measured in the same run.
"""

from __future__ import annotations

import os
import random
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


def interleaved(
    variants: dict[str, Callable[[], object]], rounds: int, calls: int
) -> dict[str, list[float]]:
    """Seconds per call of each variant in each of ``rounds`` short rounds, the variants in a
    new order each round (no variant always runs after the same other one), so that drift on a
    shared machine hits all alike."""
    samples: dict[str, list[float]] = {label: [] for label in variants}
    order = list(variants)
    shuffle = random.Random(16).shuffle
    for _ in range(rounds):
        shuffle(order)
        for label in order:
            samples[label].append(per_call(variants[label], calls, 1))
    return samples


def per_round(samples: dict[str, list[float]], top: str, bottom: str) -> list[float]:
    """``top / bottom`` in each round of :func:`interleaved` (each pair measured together)."""
    return [t / b for t, b in zip(samples[top], samples[bottom], strict=True)]


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
