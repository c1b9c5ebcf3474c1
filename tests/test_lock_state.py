"""A process's record of held locks is a cache of the server's: it follows expiry, loss, fork
and garbage collection; and a lock name is made safe exactly once."""

import gc
import os
import signal
import time
import warnings

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cache_tools import Lock, LockError, LockLost, current_lock, lock, lock_decorator
from tests.conftest import FORK


def wait_for_expiry(handle, limit=5.0):
    deadline = time.monotonic() + limit
    while handle.locked():
        assert time.monotonic() < deadline, "the lock never expired"
        time.sleep(0.02)  # polling the server's TTL: there is no event for an expiry


def test_same_handle_takes_the_lock_again_after_it_was_lost(unique):
    handle = Lock(unique, timeout=5)
    assert handle.acquire()
    handle._backend.delete(handle.keys.lock)  # lost: taken over, evicted, server restarted
    assert handle.acquire(blocking_timeout=0)
    assert handle.fence is not None and not handle.lost
    handle.release()


def test_reentry_is_still_refused_while_the_server_holds_the_lock(unique):
    with lock(unique, timeout=5), pytest.raises(LockError, match="already held"):
        Lock(unique).acquire(blocking_timeout=0)


def child_view_of_inherited_lock(name, handle, results):
    try:
        results.put(("current", current_lock() is None))
        results.put(("acquire", Lock(name, timeout=5).acquire(blocking_timeout=0.3)))
        try:
            handle.release()
            results.put(("release", "released"))
        except LockError as exc:
            results.put(("release", str(exc)))
    finally:
        results.put(("done", True))


def test_forked_child_holds_none_of_its_parents_locks(unique):
    results = FORK.Queue()
    with lock(unique, timeout=5) as handle:
        child = FORK.Process(target=child_view_of_inherited_lock, args=(unique, handle, results))
        child.start()
        seen = dict(results.get(timeout=10) for _ in range(4))
        child.join(10)
        assert handle.locked() and handle._backend.owner(handle.keys) == handle._token
    assert seen["current"] is True
    assert seen["acquire"] is False  # waits like any other process
    assert "forked" in seen["release"]  # and never releases the parent's lock


def hold_and_fork_child_that_lingers(name, ready, grandchild):
    """Parent holds a short renewed lock, forks a child that outlives it; the child must not
    renew the parent's lock after the parent is gone."""
    with lock(name, timeout=0.6) as handle:
        pid = os.fork()
        if pid == 0:  # the child starts a watchdog of its own, then outlives the holder
            with lock(f"{name}-child", timeout=0.6):
                time.sleep(2.0)
            os._exit(0)
        grandchild.value = pid  # shared memory: written before this process is killed
        ready.set()
        handle.fence  # noqa: B018
        os.kill(os.getpid(), signal.SIGKILL)  # the holder dies while its child lives on


def test_a_forked_childs_watchdog_never_renews_the_parents_lock(unique):
    ready, grandchild_pid = FORK.Event(), FORK.Value("i", 0)
    holder = FORK.Process(
        target=hold_and_fork_child_that_lingers, args=(unique, ready, grandchild_pid)
    )
    holder.start()
    assert ready.wait(10)
    grandchild = grandchild_pid.value
    holder.join(10)
    started = time.monotonic()
    with lock(unique, timeout=5, blocking_timeout=5):
        waited = time.monotonic() - started
        os.kill(grandchild, 0)  # still alive, watchdog and all
    assert waited < 1.5  # the TTL (0.6 s) ran out: nobody renewed the dead holder's lock


def test_a_collected_handle_warns_and_is_no_longer_renewed(unique):
    handle = Lock(unique, timeout=0.6)
    assert handle.acquire()
    key = handle.key
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del handle
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and key in str(w.message) for w in caught), (
        caught
    )
    probe = Lock(unique, timeout=5)
    wait_for_expiry(probe, limit=3)  # expires with its TTL instead of being renewed forever
    assert probe.acquire(blocking_timeout=0)
    probe.release()


names = st.text(min_size=1, max_size=300)


@given(names)
@hypothesis_settings(max_examples=200, deadline=None)
def test_lock_and_decorator_contend_on_the_same_key_for_every_name(name):
    @lock_decorator(key_maker=lambda n: n)
    def guarded(n):
        return current_lock().key

    assert guarded.lock_key(name) == Lock(name).key
    assert guarded(name) == lock(name).key


def test_special_names_exclude_each_other(unique, processes):
    names = [f"{unique} with space", f"{unique}{{tag}}#", f"{unique}é", unique + "x" * 250]

    @lock_decorator(key_maker=lambda n: n, blocking_timeout=0, on_timeout="skip")
    def guarded(n):
        return "ran"

    def hold_each(index, barrier):
        for name in names:
            with lock(name, timeout=5):
                barrier.wait()  # the other process tries the decorator now
                barrier.wait()

    def try_each(index, barrier):
        outcomes = []
        for name in names:
            barrier.wait()
            outcomes.append(guarded(name))
            barrier.wait()
        return outcomes

    def role(index, barrier):
        return hold_each(index, barrier) if index == 0 else try_each(index, barrier)

    assert processes(2, role)[1] == [None] * len(names)  # waited on the very same lock
    assert [guarded(name) for name in names] == ["ran"] * len(names)


def test_lock_lost_then_released_raises_lock_lost(unique):
    handle = Lock(unique, timeout=5)
    handle.acquire()
    handle._backend.delete(handle.keys.lock)
    with pytest.raises(LockLost):
        handle.release()
