"""A Celery app for the recipe in ``docs/celery.rst`` (tested on a real prefork worker by
``tests/integration/test_celery.py``): a job that must not run twice at once, and a nightly
job that runs once at a time, skipping deliveries that find it running.

Run: ``celery -A testproject.celery_app worker --pool=prefork --concurrency=4``."""

import os
import time

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
django.setup()

from cache_tools import current_lock, lock_decorator  # noqa: E402  (after django.setup())

app = Celery("testproject")
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1"),
    result_backend=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1"),
    task_acks_late=False,  # a delivery killed mid-task is not redelivered (see the docs)
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)


def _journal(path: str, line: str) -> None:
    with open(path, "a", buffering=1) as journal:
        journal.write(line + "\n")


# The task decorator outside, the lock inside: the lock is taken when a worker runs the task,
# not when it is queued. timeout is the lock's TTL (renewed while the worker lives);
# blocking_timeout stays below the task's time limit.
@app.task(time_limit=60)
@lock_decorator(
    key_maker=lambda account, journal, hold: f"invoice:{account}", timeout=2, blocking_timeout=50
)
def invoice(account: str, journal: str, hold: float) -> int:
    """Must not run twice at once for one account: the others wait their turn."""
    fence = current_lock().fence
    _journal(journal, f"start {os.getpid()} {fence} {time.time():.6f}")
    time.sleep(hold)
    _journal(journal, f"end {os.getpid()} {fence} {time.time():.6f}")
    return fence


@app.task(time_limit=60)
@lock_decorator(
    key_maker=lambda journal: "nightly-report", timeout=30, on_timeout="skip", blocking_timeout=0
)
def nightly_report(journal: str) -> str:
    """Once at a time: a delivery that finds it running is skipped (returns None)."""
    _journal(journal, f"run {os.getpid()} {time.time():.6f}")
    time.sleep(0.5)
    return "done"
