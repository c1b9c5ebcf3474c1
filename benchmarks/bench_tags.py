"""Tags and model dependencies: what they add to a hit, what an invalidation costs, and what the
write hooks add to a bulk write.

Goals (issue 29): a hit with 3 tags <= 1.15x a hit without (one round trip), a hit without tags
unchanged; ``invalidate_tags`` of one tag carried by 100 000 entries is one round trip of O(1)
server work; ``bulk_update`` of 10 000 rows costs < 5 % more with the ``depends_on`` hooks than
without cache_tools's hooks at all.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time

os.environ.setdefault("DEMO_DB", os.path.join(tempfile.mkdtemp(), "bench-tags.sqlite3"))

import redis
from _common import interleaved, per_round, table
from django.conf import settings
from django.core.cache import cache, close_caches
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from cache_tools import cache_aside, dependencies, invalidate_tags, stats
from testproject.shop.models import Product

FORK = multiprocessing.get_context("fork")
ENTRIES = 100_000
ROWS = 10_000
VALUE = {"name": "product", "price": "9.99", "reviews": list(range(10))}


def server() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@cache_aside(timeout=600, key_maker="untagged")
def untagged():
    return VALUE


@cache_aside(timeout=600, key_maker="tagged", tags=lambda: ["product:1", "category:2", "shop"])
def tagged():
    return VALUE


def hits() -> None:
    cache.set("bench:raw", VALUE, 600)
    untagged(), tagged()
    samples = interleaved(
        {"raw": lambda: cache.get("bench:raw"), "untagged": untagged, "tagged": tagged},
        rounds=41,
        calls=200,
    )
    rows = []
    for label in ("raw", "untagged", "tagged"):
        ratios = per_round(samples, label, "raw")
        rows.append(
            (
                {"raw": "raw cache.get", "untagged": "hit, no tags", "tagged": "hit, 3 tags"}[
                    label
                ],
                f"{statistics.median(samples[label]) * 1e6:.0f}",
                f"{statistics.median(ratios):.2f}",
            )
        )
    three = per_round(samples, "tagged", "untagged")
    rows.append(
        (
            "3 tags / no tags",
            "",
            f"{statistics.median(three):.3f} ({min(three):.2f}-{max(three):.2f})",
        )
    )
    table(
        "Hit with tags (41 interleaved rounds of 200 calls; goal: 3 tags <= 1.15x none)",
        rows,
        ("what", "us/op", "x raw get"),
    )


@cache_aside(timeout=600, tags=lambda n: ["catalogue"])
def catalogue_entry(n):
    return n


def fill(index: int, count: int, step: int) -> None:
    close_caches()
    for n in range(index, count, step):
        catalogue_entry(n)


def invalidation() -> None:
    processes = [FORK.Process(target=fill, args=(i, ENTRIES, 8)) for i in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    client = server()
    sample = range(0, ENTRIES, 997)
    assert all(catalogue_entry.is_cached(n) for n in sample)
    stats.flush()
    client.config_resetstat()
    timings = []
    for _ in range(50):
        started = time.perf_counter()
        invalidate_tags("catalogue")
        timings.append(time.perf_counter() - started)
    commands = client.info("commandstats")  # before the statistics flusher sends its counts
    scripts = commands.get("cmdstat_evalsha", {})
    others = {k[8:]: v["calls"] for k, v in commands.items() if k != "cmdstat_evalsha"}
    assert not any(catalogue_entry.is_cached(n) for n in sample)
    table(
        f"invalidate_tags of one tag carried by {ENTRIES:,} entries (50 calls)",
        [
            (
                f"{statistics.median(timings) * 1e6:.0f}",
                f"{scripts.get('calls', 0) / 50:.0f}",
                ", ".join(f"{name} {calls}" for name, calls in sorted(others.items())),
                f"{scripts.get('usec_per_call', 0):.1f}",
                f"{len(sample)} of {len(sample)} sampled entries missed after",
            )
        ],
        (
            "us/call",
            "round trips/call",
            "commands (in the script, and else)",
            "server us/call",
            "check",
        ),
    )


def hooks(installed: bool) -> None:
    """Install (or take away) every hook cache_tools puts on writes."""
    wrappers = connection.execute_wrappers
    watchers = [w for w in wrappers if getattr(w, "__module__", "").startswith("cache_tools")]
    for watcher in watchers:
        wrappers.remove(watcher)
    if installed:
        dependencies._watch(None, connection)
        from cache_tools import transactions

        transactions._watch(None, connection)
        dependencies._connect(Product)
    else:
        for signal in (pre_save, post_save, pre_delete, post_delete):
            signal.disconnect(sender=Product, dispatch_uid="cache_tools.dependencies.shop.Product")


@cache_aside(timeout=600, depends_on=[Product])
def product_count():
    return Product.objects.count()


def bulk_update(price: int) -> float:
    products = list(Product.objects.all())
    for product in products:
        product.price = price
    started = time.perf_counter()
    with transaction.atomic():
        Product.objects.bulk_update(products, ["price"], batch_size=1000)
    return time.perf_counter() - started


def writes() -> None:
    call_command("migrate", verbosity=0)
    Product.objects.bulk_create(Product(name=f"p{i}", price=1) for i in range(ROWS))
    product_count()
    samples: dict[str, list[float]] = {"without": [], "with": []}
    for round_ in range(31):
        for variant in ("without", "with") if round_ % 2 else ("with", "without"):
            hooks(variant == "with")
            samples[variant].append(bulk_update(round_ + 2))
            if variant == "with":
                assert not product_count.is_cached()
                product_count()
    ratios = [w / o for w, o in zip(samples["with"], samples["without"], strict=True)]
    table(
        f"bulk_update of {ROWS:,} rows in batches of 1 000 (SQLite, 31 alternating rounds)",
        [
            (
                "without cache_tools's hooks",
                f"{statistics.median(samples['without']) * 1e3:.1f}",
                "1.000",
            ),
            (
                "with depends_on hooks",
                f"{statistics.median(samples['with']) * 1e3:.1f}",
                f"{statistics.median(ratios):.3f} (range {min(ratios):.2f}-{max(ratios):.2f})",
            ),
        ],
        ("what", "ms", "x without (goal < 1.05)"),
    )


if __name__ == "__main__":
    hits()
    invalidation()
    writes()
