"""cache_tools's own shared adapters run exactly the contract suite shipped for third-party
adapters (cache_tools.testing.contract): django-redis, Django's RedisCache and memcached. (The
uWSGI cache exists only inside uWSGI: tests/integration runs the project on it.)"""

import pytest
from django.conf import settings
from django.test import override_settings

from cache_tools.testing.contract import BackendContract


class TestDjangoRedis(BackendContract):
    @pytest.fixture
    def contract_alias(self):
        return "default"


class TestDjangoBuiltinRedis(BackendContract):
    @pytest.fixture
    def contract_alias(self):
        return "django"


class TestMemcached(BackendContract):
    @pytest.fixture
    def contract_alias(self, memcached_url):
        alias = {
            "memcached": {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": memcached_url,
                "KEY_PREFIX": settings.TEST_PREFIX,
                "OPTIONS": {"connect_timeout": 1, "timeout": 1},
            }
        }
        with override_settings(CACHES={**settings.CACHES, **alias}):
            yield "memcached"


class TestValkey(BackendContract):
    @pytest.fixture
    def contract_alias(self):
        return "valkey"


class TestValkeyCluster(BackendContract):
    @pytest.fixture
    def contract_alias(self, cluster_alias):
        return cluster_alias


class TestDjangoRedisSentinel(BackendContract):
    @pytest.fixture
    def contract_alias(self, sentinel_aliases):
        return "redis-sentinel"


class TestValkeySentinel(BackendContract):
    @pytest.fixture
    def contract_alias(self, sentinel_aliases):
        return "valkey-sentinel"
