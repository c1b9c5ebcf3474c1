"""What a recording (the debug-toolbar panel's source) sees of a block of code: each call's
state and time, waits for locks (with fences) and for another caller's computation, and
invalidations; nothing outside the block, and nothing of other threads."""

from __future__ import annotations

import asyncio
import threading
import time

from cache_tools import cache_aside, invalidate_tags, lock, recording
from cache_tools.backends import get_backend
from cache_tools.local_copies import tracker_for


def test_calls_waits_and_invalidations_are_recorded_in_order(unique):
    @cache_aside(timeout=60, key_maker=lambda n: (unique, n), local=True)
    def value(n):
        return n

    value(0)  # outside the block: not recorded
    tracker = tracker_for(get_backend())
    assert tracker is not None and tracker.wait_until_ready(10)  # copies are kept from here
    holding, release = threading.Event(), threading.Event()

    def hold():
        with lock(unique, timeout=5):
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    with recording.recording() as seen:
        value(1), value(1)
        deadline = time.monotonic() + 5  # the store's own invalidation may drop the first copy
        while seen.calls[-1].state != "local":
            assert time.monotonic() < deadline, "no copy was ever served"
            value(1)
        threading.Timer(0.05, release.set).start()
        with lock(unique, timeout=5) as handle:
            pass
        value.invalidate(1)
        invalidate_tags(f"{unique}:a", f"{unique}:b")
    holder.join()
    states = [call.state for call in seen.calls]
    assert states[:2] == ["miss", "hit"] and set(states[2:-1]) <= {"hit"}
    assert {call.function for call in seen.calls} == {value.flight.function_id}
    assert seen.calls[0].key == value.cache_key(1)
    (waited,) = seen.waits
    assert (waited.kind, waited.fence) == ("lock", handle.fence) and waited.seconds >= 0.03
    assert [i.kind for i in seen.invalidations] == ["entry", "tags"]
    assert seen.invalidations[1].what == f"{unique}:a, {unique}:b"


def test_a_wait_for_another_callers_computation_is_recorded(unique):
    started = threading.Event()

    @cache_aside(timeout=60, key_maker=lambda: unique)
    def slow():
        started.set()
        time.sleep(0.2)
        return 1

    first = threading.Thread(target=slow)
    first.start()
    assert started.wait(5)
    with recording.recording() as seen:
        slow()
    first.join()
    assert [call.state for call in seen.calls] == ["hit"]
    assert sum(w.seconds for w in seen.waits if w.kind == "entry") >= 0.1


def test_other_threads_and_async_tasks_record_their_own(unique):
    @cache_aside(timeout=60, key_maker=lambda n: (unique, n))
    async def value(n):
        return n

    @cache_aside(timeout=60, key_maker=lambda n: (unique, "sync", n))
    def other(n):
        return n

    async def scenario():
        with recording.recording() as seen:
            await value(1)
            await value(1)
        return seen

    seen = asyncio.run(scenario())
    thread = threading.Thread(target=other, args=(1,))
    with recording.recording() as mine:
        thread.start()
        thread.join()  # another thread's calls are not this block's
    assert [call.state for call in seen.calls] == ["miss", "hit"]
    assert mine.calls == [] and recording.active == 0
