"""The Celery recipe (docs/celery.rst) on a real Celery worker: prefork pool, 4 processes, a
Redis broker started for the test. Journals go to files, never through the lock's server."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    from cache_tools.testing import RedisServer

    broker = RedisServer().start()
    log = tmp_path_factory.mktemp("celery") / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": f"{settings.TEST_PREFIX}-celery",
        "CELERY_BROKER_URL": broker.url,
    }
    command = [sys.executable, "-m", "celery", "-A", "testproject.celery_app", "worker"]
    command += ["--pool=prefork", "--concurrency=4", "--loglevel=INFO", "--without-gossip"]
    command += ["--without-mingle", "--without-heartbeat"]
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    os.environ["CELERY_BROKER_URL"] = broker.url
    from testproject import celery_app

    celery_app.app.conf.broker_url = celery_app.app.conf.result_backend = broker.url
    deadline = time.monotonic() + 60
    while "ready." not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    yield celery_app, process, log
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
    broker.stop()


def read(journal: Path) -> list[list[str]]:
    return [line.split() for line in journal.read_text().splitlines()] if journal.exists() else []


def test_eight_concurrent_deliveries_never_overlap(worker, tmp_path, unique):
    celery_app, _, _ = worker
    journal = tmp_path / "invoice.log"
    results = [celery_app.invoice.delay(unique, str(journal), 0.1) for _ in range(8)]
    fences = [result.get(timeout=60) for result in results]
    lines = read(journal)
    assert len(lines) == 16 and len({pid for _, pid, *_ in lines}) >= 2  # several processes ran
    sections = []
    for start, end in zip(lines[::2], lines[1::2], strict=True):
        assert (start[0], end[0], start[1], start[2]) == ("start", "end", end[1], end[2])
        sections.append((int(start[2]), float(start[3]), float(end[3])))
    for earlier, later in itertools.pairwise(sections):
        assert earlier[2] <= later[1], (earlier, later)  # no two runs overlap
        assert earlier[0] < later[0]  # fences increase in the order they ran
    assert sorted(fences) == sorted(s[0] for s in sections)


def test_a_once_at_a_time_job_skips_the_deliveries_that_find_it_running(worker, tmp_path):
    celery_app, _, _ = worker
    journal = tmp_path / "nightly.log"
    results = [celery_app.nightly_report.delay(str(journal)) for _ in range(4)]
    outcomes = [result.get(timeout=60) for result in results]
    assert outcomes.count("done") == len(read(journal)) >= 1
    assert outcomes.count(None) >= 1  # skipped: it was running


def test_a_killed_workers_lock_is_taken_over_after_its_ttl(worker, tmp_path, unique):
    """SIGKILL the process running the task: its lock's watchdog dies with it, the lock
    expires after its TTL (2 s), the next delivery takes it with a higher fence."""
    celery_app, _, _ = worker
    journal = tmp_path / "killed.log"
    celery_app.invoice.delay(unique, str(journal), 30)
    deadline = time.monotonic() + 30
    while not read(journal):
        assert time.monotonic() < deadline, "the first task never started"
        time.sleep(0.02)
    _, pid, fence, _ = read(journal)[0]
    os.kill(int(pid), signal.SIGKILL)
    killed_at = time.time()
    second = celery_app.invoice.delay(unique, str(journal), 0)
    assert second.get(timeout=60) > int(fence)
    started = [line for line in read(journal) if line[0] == "start"]
    taken_over_after = float(started[1][3]) - killed_at
    assert 1.0 <= taken_over_after <= 4.0, taken_over_after  # the TTL (2 s), not sooner
