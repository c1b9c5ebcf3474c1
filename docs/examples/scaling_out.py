"""Scaling out: the same decorators on a Redis Cluster (django-valkey's ClusterValkeyCache),
started here from the embedded redis-server by cache_tools.testing."""

from django.conf import settings
from django.test import override_settings

from cache_tools import cache_aside, lock
from cache_tools.testing.groups import RedisCluster

with RedisCluster(primaries=3) as cluster:
    CLUSTER = {
        "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
        "LOCATION": cluster.url,  # any node; the client discovers the others
        "KEY_PREFIX": "shop",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }
    with override_settings(CACHES={**settings.CACHES, "cluster": CLUSTER}):

        @cache_aside(cache="cluster", timeout=60)
        def price(sku: str) -> int:
            return len(sku) * 100  # stands for a slow query

        assert price("abc") == 300 and price("abc") == 300
        assert price.cache_info().hits == 1

        # The lock's keys share one hash tag, so its scripts run on one node.
        with lock("restock:abc", cache="cluster", timeout=10) as handle:
            assert handle.fence > 0
