"""clear_cache benchmark: 1,000,000 keys (half of them foreign), seconds and peak memory.

Compared with django-redis's ``cache.delete_pattern("*")`` (its default ``itersize``, and 1000)
on the same data. Each variant runs in a process of its own, so its peak RSS (from ``wait4``) is
its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from _common import table
from django.conf import settings
from django.core.cache import cache

from cache_tools.backends import get_backend

TOTAL = 1_000_000
ROOT = Path(__file__).resolve().parent.parent
PREFIX = settings.CACHES["default"]["KEY_PREFIX"]
FOREIGN = f"{PREFIX}-foreign"


def fill(client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(TOTAL // 2):
        pipe.set(cache.make_key(f"k{i}"), b"x")
        pipe.set(f"{FOREIGN}:1:k{i}", b"x")
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def run(command: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of ``command`` in a child process."""
    env = {**os.environ, "CACHE_KEY_PREFIX": PREFIX, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed")
    return time.monotonic() - started, usage.ru_maxrss / 1024


def count(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=pattern, count=10_000))


def main() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    python = sys.executable
    variants = {
        "manage.py clear_cache": [python, "manage.py", "clear_cache", "--cache", "default"],
        "django-redis delete_pattern": [
            python,
            "-c",
            "import django; django.setup(); from django.core.cache import cache; "
            "cache.delete_pattern('*')",
        ],
        "django-redis delete_pattern(itersize=1000)": [
            python,
            "-c",
            "import django; django.setup(); from django.core.cache import cache; "
            "cache.delete_pattern('*', itersize=1000)",
        ],
        "python startup (baseline)": [
            python,
            "-c",
            "import django; django.setup(); from django.core.cache import cache",
        ],
    }
    rows = []
    for label, command in variants.items():
        fill(client)
        seconds, peak = run([*command])
        left = count(client, cache.make_key("*"))
        foreign = count(client, f"{FOREIGN}:*")
        rows.append((label, f"{seconds:.2f}", f"{peak:.0f}", str(left), str(foreign)))
    get_backend("default").delete_matching(f"{FOREIGN}:*")
    table(
        f"Clearing {TOTAL // 2:,} keys of the alias among {TOTAL:,}",
        rows,
        ("what", "seconds", "peak MiB", "alias keys left", "foreign keys left"),
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    main()
