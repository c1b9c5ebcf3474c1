"""Monitoring: the figures every process shares, signals, the command and Prometheus."""

import io
import json

from django.core.management import call_command
from prometheus_client import CollectorRegistry, generate_latest

from cache_tools import cache_aside, lock, monitor, signals, stats
from cache_tools.contrib.prometheus import register


@cache_aside(timeout=60)
def price_of(sku):
    return {"sku": sku, "price": 42}


misses = []


def count_misses(sender, function, alias, **kwargs):
    misses.append(function)  # in a real receiver: hand it to a queue, not a network call


signals.cache_miss.connect(count_misses, sender=price_of)  # this function's misses only
price_of("A1")  # a miss: computes
price_of("A1")  # a hit
signals.cache_miss.disconnect(count_misses, sender=price_of)
assert misses == [price_of.flight.function_id]

with lock("nightly-import"):
    stats.flush()  # counts reach the server within 0.2 s anyway; now, for the example
    (held,) = [row for row in monitor.locks() if row.name == "nightly-import"]
    assert held.state.held and held.state.fence is not None

(row,) = [row for row in monitor.functions() if row.function == price_of.flight.function_id]
assert (row.info.hits, row.info.misses, row.hit_ratio) == (1, 1, 0.5)

# manage.py cache_stats --json: the same figures keyed by dotted path
out = io.StringIO()
call_command("cache_stats", "--json", stdout=out)
assert json.loads(out.getvalue())["functions"][price_of.flight.function_id]["hits"] == 1

# Prometheus: a collector reading the shared figures at each scrape
registry = CollectorRegistry()
register(registry)
assert b"cache_tools_hits_total{" in generate_latest(registry)
