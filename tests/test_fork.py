"""A process forked at any moment, by any thread, gets caches it can use: forking never hands a
child a lock held by a thread the child does not have."""

import faulthandler
import multiprocessing
import os
import sys
import threading

import pytest
from django.core.cache import caches

from cache_tools import _process, local_copies
from cache_tools.backends import get_backend
from cache_tools.testing.contract import run_processes


def wait_for_child(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def fork_while_held(lock, in_child, hold_for: float | None = None) -> int:
    """Fork while another thread holds ``lock`` (at most ``hold_for`` seconds, else until the
    fork has returned); the child's exit code: 0 when ``in_child()`` returned true, 1 when it
    did not return within 5 s (its stack goes to standard error)."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            done.wait(hold_for)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(5, exit=True, file=sys.__stderr__)
        try:
            os._exit(0 if in_child() else 2)
        finally:
            os._exit(3)
    done.set()
    thread.join()
    return wait_for_child(pid)


def test_a_fork_while_another_thread_reads_djangos_caches_leaves_the_child_able_to_read_them():
    # asgiref's Local (Django's ``caches``) takes a lock on every read; a thread that loses
    # the interpreter inside one (a finalizer closing a socket, say) holds it across the fork.
    guard = getattr(caches._connections, "_lock", None)
    if guard is None:
        pytest.skip("this asgiref's Local takes no lock")

    def read_and_write() -> bool:
        caches["default"].set("fork-probe", 1, 5)
        return caches["default"].get("fork-probe") == 1

    # a slow finalizer: the fork must wait for it, not inherit the lock
    assert fork_while_held(guard, read_and_write, hold_for=0.5) == 0


@pytest.mark.parametrize("alias", ["default", "django", "valkey"])
def test_a_fork_while_another_thread_holds_the_pools_lock_leaves_the_child_able_to_send(alias):
    # redis-py 8's pool, reset in the child at its first command, takes the lock it inherited;
    # another thread holds it while it hands a connection back.
    client = get_backend(alias).client()
    client.ping()
    assert fork_while_held(client.connection_pool._lock, client.ping, hold_for=0.5) == 0


def test_a_fork_while_another_thread_starts_a_near_cache_listener_leaves_the_child_copies():
    def copies() -> bool:
        return (
            local_copies.copies_for(get_backend(), "tests.fork", 8, keep_objects=False) is not None
        )

    assert fork_while_held(local_copies._guard, copies) == 0  # as while a listener thread starts


def test_a_lock_held_too_long_delays_a_fork_but_never_stops_it(monkeypatch, caplog):
    stuck = threading.Lock()  # held by a stuck thread: the fork would wait for it
    monkeypatch.setattr(_process, "_fork_guards", [*_process._fork_guards, lambda: [stuck]])
    monkeypatch.setattr(_process, "_FORK_WAIT", 0.2)
    assert fork_while_held(stuck, lambda: True) == 0
    assert "forking while" in caplog.text


def test_threads_forking_at_once_each_hold_and_release_their_own_locks():
    def fork_often(failures: list[int]) -> None:
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                os._exit(0 if caches["default"] is not None else 2)
            failures.append(wait_for_child(pid))

    results: list[int] = []
    threads = [threading.Thread(target=fork_often, args=(results,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0] * 80
    guard = caches._connections._lock  # free again: not left held by a mixed-up release
    assert guard.acquire(timeout=1)
    guard.release()


def test_a_child_that_hangs_fails_the_run_with_its_stack_and_is_killed(capfd):
    def target(index: int, barrier) -> int:
        if index == 1:
            threading.Event().wait()  # hangs
        return index

    with pytest.raises(AssertionError, match=r"children \[1\] did not answer"):
        run_processes(2, target, timeout=1)
    assert multiprocessing.active_children() == []
    assert "in target" in capfd.readouterr().err  # the hung child's stack
