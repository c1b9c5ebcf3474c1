"""Test settings: the test project's, with a key prefix unique to this test run.

With ``REDIS_URL`` set, tests share that server and touch only keys under their own prefix;
otherwise an embedded ``redis-server`` is started for the run.
"""

import os
import tempfile
import uuid

from testproject.settings import *  # noqa: F403
from testproject.settings import REDIS_URL

from . import postgres

# Exported so that child processes (multiprocessing, uWSGI) use the same prefix.
TEST_PREFIX = os.environ.setdefault("CACHE_TOOLS_TEST_PREFIX", f"t{uuid.uuid4().hex[:10]}")

_OPTIONS = {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": TEST_PREFIX,
        "OPTIONS": _OPTIONS,
    },
    "django": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{TEST_PREFIX}-dj",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
    "valkey": {
        "BACKEND": "django_valkey.cache.ValkeyCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{TEST_PREFIX}-vk",
        "OPTIONS": _OPTIONS,
    },
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
}
# "lite" and "pg": databases several processes share, for the transaction tests (each
# process holds its own connection); "default" stays in memory for everything else.
_LITE = os.path.join(tempfile.gettempdir(), f"cache-tools-{TEST_PREFIX}.sqlite3")
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "lite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _LITE,
        "OPTIONS": {"timeout": 20},
        "TEST": {"NAME": _LITE, "DEPENDENCIES": []},
    },
    "pg": {**postgres.database(), "TEST": {"DEPENDENCIES": []}},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
