"""Shared fixtures: a real Redis (embedded or ``REDIS_URL``), unique names, process helpers."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from cache_tools.testing import pause_process
from cache_tools.testing.contract import FORK, run_processes

pytest_plugins = ["cache_tools.testing"]
__all__ = ["FORK", "run_processes"]


@pytest.fixture(scope="session", autouse=True)
def redis_client() -> Iterator[redis.Redis]:
    """A raw client of the run's Redis; at the end, deletes every key this run wrote."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    from cache_tools import stats

    stats.flush()  # send buffered counts now, so that they are deleted below, not after
    # Delete only this run's keys: REDIS_URL may point at a server shared with others.
    for prefix in (settings.TEST_PREFIX, "cttest"):
        batch = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(batch), 1000):
            client.unlink(*batch[start : start + 1000])
    client.close()


@pytest.fixture(autouse=True)
def no_child_outlives_its_test() -> Iterator[None]:
    """Kill forked children a test left running (a hung one fails its own test): at exit,
    multiprocessing would wait for them for ever, and one hang would stop the whole run."""
    yield
    for child in multiprocessing.active_children():
        child.kill()
        child.join()


@pytest.fixture
def unique() -> str:
    """A fresh name, so that tests never see each other's keys."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def processes() -> Callable[..., list[Any]]:
    return run_processes


@pytest.fixture(scope="session")
def private_redis(redis_server: Any) -> Any:
    """A server of this run's own (cache_tools.testing's plugin fixture), which tests may stop,
    pause and restart."""
    return redis_server


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"redis: {os.environ.get('REDIS_URL')} prefix: {os.environ.get('CACHE_TOOLS_TEST_PREFIX')}"
    )


class Memcached:
    """A real memcached process on a free port, which tests may pause (SIGSTOP)."""

    def __init__(self, process: Any, port: int) -> None:
        self.process, self.url = process, f"127.0.0.1:{port}"

    def pause(self) -> None:
        pause_process(self.process)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="session")
def memcached() -> Iterator[Memcached]:
    """A real memcached on a free port (``.ci/run`` installs Debian's memcached)."""
    binary = shutil.which("memcached")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("memcached is not installed; .ci/run installs it")
        pytest.skip("memcached is not installed (apt-get install memcached); CI runs these tests")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-u", "root"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("memcached did not start")
            time.sleep(0.02)
    yield Memcached(process, port)
    process.send_signal(signal.SIGCONT)
    process.terminate()
    process.wait()


@pytest.fixture(scope="session")
def memcached_url(memcached: Memcached) -> str:
    return memcached.url


@pytest.fixture
def down_alias(private_redis) -> Iterator[str]:
    """An alias on ``private_redis`` with short socket timeouts, for outage tests."""
    from django.test import override_settings

    caches = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": private_redis.url,
            "KEY_PREFIX": "outage",
            # django-redis must not make a failed lock look acquired by swallowing the error.
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 0.3,
                "SOCKET_TIMEOUT": 0.3,
                "IGNORE_EXCEPTIONS": True,
            },
        },
    }
    with override_settings(CACHES=caches):
        yield "down"


_GROUP_OPTIONS = {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1}


def cluster_cache(cluster: Any) -> dict[str, Any]:
    """django-valkey's ClusterValkeyCache on a cache_tools.testing RedisCluster."""
    return {
        "BACKEND": "django_valkey.cluster_cache.cache.ClusterValkeyCache",
        "LOCATION": f"valkey://127.0.0.1:{cluster.startup_nodes[0][1]}",
        "KEY_PREFIX": settings.TEST_PREFIX,
        "OPTIONS": _GROUP_OPTIONS,
    }


def sentinel_caches(group: Any) -> dict[str, dict[str, Any]]:
    """django-redis's and django-valkey's Sentinel clients on a RedisSentinel group."""
    common = {"SENTINELS": group.sentinel_addresses, **_GROUP_OPTIONS}
    return {
        "redis-sentinel": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{group.master_name}/0",
            "KEY_PREFIX": settings.TEST_PREFIX,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                **common,
            },
        },
        "valkey-sentinel": {
            "BACKEND": "django_valkey.cache.ValkeyCache",
            "LOCATION": f"valkey://{group.master_name}/0",
            "KEY_PREFIX": f"{settings.TEST_PREFIX}-vk",
            "OPTIONS": {
                "CLIENT_CLASS": "django_valkey.client.SentinelClient",
                "CONNECTION_FACTORY": "django_valkey.pool.SentinelConnectionFactory",
                **common,
            },
        },
    }


@pytest.fixture
def cluster_alias(redis_cluster: Any) -> Iterator[str]:
    """The alias ``cluster``: ClusterValkeyCache on the session's Redis Cluster."""
    from django.test import override_settings

    with override_settings(CACHES={**settings.CACHES, "cluster": cluster_cache(redis_cluster)}):
        yield "cluster"


@pytest.fixture
def sentinel_aliases(redis_sentinel: Any) -> Iterator[None]:
    """The aliases ``redis-sentinel`` and ``valkey-sentinel`` on the session's Sentinel group."""
    from django.test import override_settings

    with override_settings(CACHES={**settings.CACHES, **sentinel_caches(redis_sentinel)}):
        yield


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: nothing listens there


@pytest.fixture
def dead_alias(settings):
    """An alias whose server refuses connections, beside the working ones."""
    settings.CACHES = {
        **settings.CACHES,
        "dead": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
            "KEY_PREFIX": "dead",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        },
    }
    return "dead"
