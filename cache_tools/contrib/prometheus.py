"""Prometheus metrics of every cached function, lock and tag (the ``[prometheus]`` extra).

The figures are read from the cache server at each scrape, so they are already totals over
every process and host: expose them from one place (any one worker, or a ``/metrics`` view),
and do not sum them across scraped instances.

.. code-block:: python

    # settings.py or an AppConfig.ready(): with django-prometheus's /metrics, or alone
    from cache_tools.contrib.prometheus import register
    register()

Metric names (stable; labels ``function`` and ``alias``, ``lock`` and ``alias``, or ``tag`` and
``alias``):

================================================  ===========================================
``cache_tools_hits_total``                        calls answered from the cache
``cache_tools_stale_hits_total``                  calls answered stale while refreshing
``cache_tools_local_hits_total``                  calls answered from a process's own copy
``cache_tools_misses_total``                      calls that computed
``cache_tools_computations_total``                runs of the function
``cache_tools_errors_total``                      cache-side failures
``cache_tools_lock_acquisitions_total``           acquisitions of a lock
``cache_tools_lock_waits_total``                  acquisitions that had to wait
``cache_tools_lock_wait_seconds_total``           seconds waited in all
``cache_tools_lock_lost_total``                   locks found expired or taken over
``cache_tools_lock_held``                         1 while the lock is held
``cache_tools_lock_waiters``                      callers waiting for it now
``cache_tools_tag_invalidations_total``           invalidations of a tag (the servers keep the
                                                  1 000 most recently invalidated per alias)
================================================  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from cache_tools import monitor

__all__ = ["CacheToolsCollector", "register"]

_FUNCTION_COUNTERS = {
    "hits": "calls answered from the cache",
    "stale_hits": "calls answered with a stale value while it refreshed",
    "local_hits": "calls answered from a process's own copy",
    "misses": "calls that computed",
    "computations": "runs of the function",
    "errors": "cache-side failures (outage, refused or unserialisable values)",
}


class CacheToolsCollector(Collector):
    """Collects cache_tools's figures from the cache servers at each scrape."""

    def collect(self) -> Iterator[Metric]:
        functions = monitor.functions()
        labels = ["function", "alias"]
        for field, documentation in _FUNCTION_COUNTERS.items():
            family = CounterMetricFamily(f"cache_tools_{field}", documentation, labels=labels)
            for function in functions:
                family.add_metric(
                    [function.function, function.alias], getattr(function.info, field)
                )
            yield family
        locks = monitor.locks()
        labels = ["lock", "alias"]
        counters: dict[str, tuple[str, Callable[[monitor.LockFigures], float]]] = {
            "acquisitions": ("acquisitions of the lock", lambda r: r.info.acquired),
            "waits": ("acquisitions that had to wait", lambda r: r.info.waited),
            "wait_seconds": ("seconds waited for the lock", lambda r: r.info.wait_ms / 1000),
            "lost": ("locks found expired or taken over while held", lambda r: r.info.lost),
        }
        for name, (documentation, value) in counters.items():
            family = CounterMetricFamily(f"cache_tools_lock_{name}", documentation, labels=labels)
            for row in locks:
                family.add_metric([row.name, row.alias], value(row))
            yield family
        held = GaugeMetricFamily("cache_tools_lock_held", "1 while the lock is held", labels=labels)
        waiters = GaugeMetricFamily(
            "cache_tools_lock_waiters", "callers waiting for the lock now", labels=labels
        )
        for row in locks:
            held.add_metric([row.name, row.alias], 1 if row.state.held else 0)
            if row.state.waiters is not None:
                waiters.add_metric([row.name, row.alias], row.state.waiters)
        yield held
        yield waiters
        invalidations = CounterMetricFamily(
            "cache_tools_tag_invalidations", "invalidations of the tag", labels=["tag", "alias"]
        )
        for tag in monitor.tags():
            invalidations.add_metric([tag.name, tag.alias], tag.invalidated)
        yield invalidations


def register(registry: CollectorRegistry = REGISTRY) -> CacheToolsCollector:
    """Add a :class:`CacheToolsCollector` to ``registry`` (the default one, which
    django-prometheus's ``/metrics`` and ``prometheus_client.start_http_server`` serve)."""
    collector = CacheToolsCollector()
    registry.register(collector)
    return collector
