"""Shared fixtures: a real Redis (embedded or ``REDIS_URL``), unique names, process helpers."""

from __future__ import annotations

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
        self.process.send_signal(signal.SIGSTOP)

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
