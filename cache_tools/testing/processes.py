"""Forked worker processes for tests that coordinate across processes.

>>> run_processes(4, lambda index, barrier: barrier.wait() or index)
[0, 1, 2, 3]
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import queue
import time
from collections.abc import Callable
from typing import Any

from django.core.cache import close_caches

__all__ = ["FORK", "run_processes"]

FORK = multiprocessing.get_context("fork")


def run_processes(
    count: int,
    target: Callable[..., Any],
    *args: Any,
    timeout: float = 60,
    fresh_caches: bool = True,
) -> list[Any]:
    """Run ``target(index, barrier, *args)`` in ``count`` forked processes at once.

    ``barrier`` lets the children start together; returns what each child returned, in index
    order, and fails if a child raised or did not answer within ``timeout`` seconds. A child
    that hangs writes every thread's stack to standard error (pytest shows it with the failure)
    and is killed: none outlives the call. Each child first closes Django's caches, as Django
    does after each request; with ``fresh_caches=False`` it uses those it inherited, as a
    child of ``multiprocessing`` or Celery's prefork pool does.
    """
    barrier = FORK.Barrier(count)
    results = FORK.Queue()

    def child(index: int) -> None:
        faulthandler.dump_traceback_later(timeout, exit=True, file=2)  # standard error
        if fresh_caches:
            close_caches()
        try:
            results.put((index, "ok", target(index, barrier, *args)))
        except BaseException as exc:
            results.put((index, "error", f"{type(exc).__name__}: {exc}"))
            raise

    processes = [FORK.Process(target=child, args=(i,)) for i in range(count)]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout + 10  # the children's own watchdogs go off first
    collected: list[tuple[int, str, Any]] = []
    try:
        while len(collected) < count:
            try:
                collected.append(results.get(timeout=0.1))
                continue
            except queue.Empty:
                pass
            answered = {item[0] for item in collected}
            silent = [i for i, p in enumerate(processes) if i not in answered]
            gone = all(processes[i].exitcode is not None for i in silent)
            if (gone and results.empty()) or time.monotonic() > deadline:
                codes = {i: processes[i].exitcode for i in silent}
                raise AssertionError(f"children {silent} did not answer (exit codes {codes})")
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    errors = [item for item in collected if item[1] == "error"]
    assert not errors, errors
    return [value for _, _, value in sorted(collected, key=lambda item: item[0])]
