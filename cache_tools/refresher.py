"""Stale entries refreshed in the background, one refresh per entry at a time per process.

>>> refresher.get().submit(entry_key, refresh, "shop.price")   # from a sync caller
>>> refresher.get().submit_task(entry_key, arefresh, "shop.price")   # from a coroutine
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connections

from ._process import PerProcess

__all__ = ["Refresher", "refresher"]

logger = logging.getLogger("cache_tools.aside")


class Refresher:
    """Runs stale-entry refreshes in the background, one per entry at a time per process: on
    a few threads for sync callers, as tasks on the running loop for async ones.

    A refresh that finds another caller (maybe in another process) refreshing returns how long
    that caller's lock has left, capped at a second; stale hits in this process then skip the
    attempt until that time instead of spending a round trip each. Tasks are kept referenced
    until they finish, so a refresh outlives the request that started it.
    """

    WORKERS = 4
    LONGEST_QUIET = 1.0

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._running: set[str] = set()
        self._quiet_until: dict[str, float] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def _claim(self, entry_key: str) -> bool:
        now = time.monotonic()
        with self._guard:
            if entry_key in self._running or self._quiet_until.get(entry_key, 0.0) > now:
                return False
            self._running.add(entry_key)
            return True

    def _done(self, entry_key: str, busy_for: float | None) -> None:
        now = time.monotonic()
        with self._guard:
            self._running.discard(entry_key)
            if busy_for:
                if len(self._quiet_until) > 1000:
                    self._quiet_until = {k: t for k, t in self._quiet_until.items() if t > now}
                self._quiet_until[entry_key] = now + min(busy_for, self.LONGEST_QUIET)

    def submit(self, entry_key: str, refresh: Callable[[], float | None], name: str) -> None:
        if not self._claim(entry_key):
            return
        with self._guard:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.WORKERS, "cache-tools-refresh")
            executor = self._executor
        executor.submit(self._run, entry_key, refresh, name)

    def _run(self, entry_key: str, refresh: Callable[[], float | None], name: str) -> None:
        busy_for = None
        try:
            busy_for = refresh()
        except Exception:
            logger.exception("background refresh of %s failed", name)
        finally:
            self._done(entry_key, busy_for)
            connections.close_all()  # this thread's own database connections

    def submit_task(
        self,
        entry_key: str,
        refresh: Callable[[], Coroutine[Any, Any, float | None]],
        name: str,
    ) -> None:
        if not self._claim(entry_key):
            return
        task = asyncio.get_running_loop().create_task(self._arun(entry_key, refresh, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _arun(
        self,
        entry_key: str,
        refresh: Callable[[], Coroutine[Any, Any, float | None]],
        name: str,
    ) -> None:
        busy_for = None
        try:
            busy_for = await refresh()
        except Exception:
            logger.exception("background refresh of %s failed", name)
        finally:
            self._done(entry_key, busy_for)


refresher = PerProcess(Refresher)
