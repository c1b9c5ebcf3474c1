"""Local copies (cache_aside(local=...)): served without a round trip, dropped in every process
by Redis's own invalidations when their entry is stored, refreshed, invalidated, cleared,
flushed or expires; never served while the invalidation connection is down."""

import threading
import time

import pytest
import redis
from django.conf import settings
from django.core import checks as django_checks
from django.test import override_settings

from cache_tools import cache_aside, cache_view
from cache_tools.backends import get_backend
from cache_tools.local_copies import copies_for, tracker_for
from cache_tools.testing.contract import run_processes

SOURCE = f"{settings.TEST_PREFIX}:near:source"


def raw():
    return redis.Redis.from_url(settings.REDIS_URL)


@cache_aside(timeout=60, local=True, key_maker="near:{name}")
def current(name):
    """The value of a raw Redis counter, when computed: the test changes it behind our back."""
    return int(raw().get(f"{SOURCE}:{name}") or 0)


@cache_aside(timeout=60, local=8, local_copy="object", key_maker="near-object:{name}")
def as_object(name):
    return {"name": name}


@pytest.fixture(autouse=True)
def tracking():
    tracker = tracker_for(get_backend())
    assert tracker is not None and tracker.wait_until_ready(10), "the listener never started"
    return tracker


def until(condition, limit=5.0):
    """Poll a condition a remote process or the server brings about (no event reaches us)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def copied(function, *args):
    """Call until this process serves a copy: the invalidations of our own first store (of the
    entry, of its generation) must have come back first, or they drop the copy just made."""
    before = function.cache_info().local_hits
    until(lambda: function(*args) is not None and function.cache_info().local_hits > before)


def test_a_copy_is_served_without_a_round_trip(unique):
    current.cache_clear_stats()
    assert current(unique) == 0  # computed and stored
    copied(current, unique)
    raw().set(f"{SOURCE}:{unique}", 5)  # the source changes; the entry does not
    before = current.cache_info()
    assert [current(unique) for _ in range(3)] == [0, 0, 0]
    after = current.cache_info()
    assert (after.hits, after.local_hits) == (before.hits, before.local_hits + 3)


def change_in_another_process(index, barrier, unique, how):
    barrier.wait()
    raw().set(f"{SOURCE}:{unique}", 7)
    if how == "refresh":
        current.refresh(unique)
    elif how == "invalidate":
        current.invalidate(unique)
    elif how == "invalidate_all":
        current.invalidate_all()
    return time.monotonic()


@pytest.mark.parametrize("how", ["refresh", "invalidate", "invalidate_all"])
def test_a_change_in_another_process_drops_the_copy(unique, how):
    assert current(unique) == 0
    copied(current, unique)
    (changed_at,) = run_processes(1, change_in_another_process, unique, how)
    until(lambda: current(unique) == 7)
    seen = time.monotonic()
    print(f"{how}: new value seen {1000 * (seen - changed_at):.1f} ms after the call returned")


@pytest.mark.parametrize("how", ["refresh", "kill"])
def test_a_copy_is_not_served_while_its_invalidation_waits_unread(unique, tracking, how):
    """The listener thread may not run for a while (another thread holds the GIL, the OS
    runs something else); a copy must not be served once the server's message has reached
    this process's socket, nor once that connection is gone. The listener is held back here
    until the change is seen, so only the hit path's own check can see it."""
    assert current(unique) == 0
    copied(current, unique)
    go_on, apply_unread = threading.Event(), tracking._apply_unread

    def held_back(listener):
        go_on.wait(10)
        apply_unread(listener)

    tracking._apply_unread = held_back
    try:
        if how == "refresh":
            run_processes(1, change_in_another_process, unique, "refresh")
        else:
            client = raw()
            client.set(f"{SOURCE}:{unique}", 7)
            for connection in client.client_list():
                if "subscribe" in connection["cmd"] and connection["sub"] == "1":
                    client.client_kill_filter(_id=connection["id"])
            # Nothing tells the process the connection died: the server recomputing is ours.
            client.delete(current.cache_key(unique))
        until(lambda: not tracking.current(), limit=2)  # the message (or EOF) is on its way
        assert current(unique) == 7  # read from the server, not the copy
        assert tracking.healthy  # the listener has not noticed anything yet
    finally:
        go_on.set()
        del tracking._apply_unread
    until(lambda: tracking.wait_until_ready(0) and current(unique) == 7)


def test_no_copy_is_served_once_the_tracking_connection_is_gone(unique, tracking):
    """A server that lost this process's tracking (its connection killed) sends nothing more:
    the copy goes at once, not at the next check of that connection a second later."""
    assert current(unique) == 0
    copied(current, unique)
    client = raw()
    tracked = [c for c in client.client_list() if "t" in c["flags"]]  # CLIENT TRACKING on
    assert tracked
    for connection in tracked:
        client.client_kill_filter(_id=connection["id"])
    run_processes(1, change_in_another_process, unique, "refresh")  # acknowledged there
    assert current(unique) == 7  # before: the old copy, for up to a second
    until(lambda: tracking.wait_until_ready(0) and current(unique) == 7)


def test_clear_cache_and_flush_drop_copies(unique, tracking):
    from django.core.management import call_command

    assert current(unique) == 0 and current(unique) == 0
    raw().set(f"{SOURCE}:{unique}", 3)
    call_command("clear_cache", "--cache", "default", "--pattern", "*near*", verbosity=0)
    until(lambda: current(unique) == 3)


def test_an_expired_entry_is_not_served_from_a_copy(unique):
    @cache_aside(timeout=0.3, local=True, key_maker=lambda: unique)
    def short():
        return int(raw().incr(f"{SOURCE}:{unique}:short"))

    assert short() == 1 and short() == 1  # stored, copied
    time.sleep(0.35)  # the entry's own timeout passing: no event for that
    assert short() == 2


def test_copies_stop_while_the_invalidation_connection_is_down(unique, tracking):
    """Kill the listener's connection: copies are flushed and bypassed until it is back, so a
    change made meanwhile is never missed."""
    assert current(unique) == 0 and current(unique) == 0
    client = raw()
    listeners = [c for c in client.client_list() if "subscribe" in c["cmd"] and c["sub"] == "1"]
    assert listeners
    for connection in listeners:
        client.client_kill_filter(_id=connection["id"])
    until(lambda: not tracking.healthy, limit=3)
    client.set(f"{SOURCE}:{unique}", 9)
    current.refresh(unique)  # while the tracker is down: its invalidation reaches nobody here
    assert current(unique) == 9  # not a copy: served remotely
    assert tracking.wait_until_ready(10)
    assert current(unique) == 9


def read_in_child(index, barrier, unique):
    barrier.wait()
    return current(unique), current.cache_info().local_hits


def test_a_forked_process_starts_without_copies(unique):
    assert current(unique) == 0 and current(unique) == 0  # copied here
    raw().set(f"{SOURCE}:{unique}", 4)
    current.refresh(unique)  # dropped here at once (this process's own write)
    ((value, _),) = run_processes(1, read_in_child, unique)
    assert value == 4


def copies_with_many_files_open(index, barrier, unique):
    """In a fresh process whose listener's descriptor is above 1 023 (select() refuses those):
    copies are still made and served."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    null = os.open(os.devnull, os.O_RDONLY)  # not stdin, which a CI runner may have closed
    held = [os.dup(null) for _ in range(1100)]
    barrier.wait()
    tracker = tracker_for(get_backend())
    assert tracker is not None and tracker.wait_until_ready(10)
    assert tracker.socket > 1023
    assert current(unique) == 0
    copied(current, unique)
    for fd in [*held, null]:
        os.close(fd)
    return tracker.socket


def test_copies_are_served_when_the_listener_descriptor_is_high(unique):
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2048:
        pytest.skip("the hard limit on open files is below 2048 here")
    (descriptor,) = run_processes(1, copies_with_many_files_open, unique)
    assert descriptor > 1023


def test_object_copies_are_shared_bytes_copies_are_not(unique):
    first = as_object(unique)
    copied(as_object, unique)
    assert as_object(unique) is as_object(unique) and as_object(unique) == first


def test_the_global_switch_turns_copies_off(unique):
    with override_settings(CACHE_TOOLS={"LOCAL_COPIES": False}):
        current.cache_clear_stats()
        assert current(unique) == 0 and current(unique) == 0 and current(unique) == 0
        assert current.cache_info().local_hits == 0


def test_views_keep_local_copies(unique):
    from django.http import HttpResponse
    from django.test import RequestFactory

    calls = []

    @cache_view(timeout=60, local=True)
    def page(request):
        calls.append(1)
        return HttpResponse(f"page {len(calls)}")

    request = RequestFactory().get(f"/near/{unique}")
    assert page(request).content == b"page 1"
    until(lambda: page(request).content == b"page 1" and page.cache_info().local_hits > 0)
    assert calls == [1]


def test_local_copies_on_a_backend_without_tracking_are_flagged(monkeypatch):
    from cache_tools import checks

    monkeypatch.setattr(checks, "_uses", [])

    @cache_aside(cache="locmem", local=True)
    def local_only():
        pass

    errors = [m for m in django_checks.run_checks() if m.id == "cache_tools.W004"]
    assert errors and "cannot tell processes when entries change" in errors[0].msg


def test_bad_local_options():
    with pytest.raises(ValueError, match="local must be True, False or a positive number"):
        cache_aside(local=0)
    with pytest.raises(ValueError, match='local_copy must be "bytes" or "object"'):
        cache_aside(local=True, local_copy="pickle")


def test_copies_are_bounded(unique):
    @cache_aside(timeout=60, local=5, key_maker=lambda i: (unique, i))
    def square(i):
        return i * i

    for i in range(8):
        square(i)
        copied(square, i)
    assert len(copies_for(get_backend(), square.flight.function_id, 5, False)) == 5


@pytest.mark.parametrize("location", ["live", "refusing"])
def test_a_settings_change_stops_the_listeners_of_replaced_adapters(location):
    """A settings change makes new adapters; the old one's listener stops, whether it was
    listening or reconnecting to a server that refuses (it would otherwise keep a thread and
    reconnect for ever), and vouches for no copy."""
    url = settings.REDIS_URL if location == "live" else "redis://127.0.0.1:1/0"
    alias = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url, "KEY_PREFIX": "near-stop"}
    with override_settings(CACHES={**settings.CACHES, "replaced": alias}):
        tracker = tracker_for(get_backend("replaced"))
        assert tracker is not None
        if location == "live":
            assert tracker.wait_until_ready(10)
    tracker.thread.join(5)
    assert not tracker.thread.is_alive()
    assert not tracker.current()


def test_an_adapter_replaced_while_a_call_runs_starts_no_listener():
    """A caller still holding an adapter that a settings change replaced (it was fetched just
    before) gets no tracker and no copies, rather than a listener nobody would stop."""
    alias = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": settings.REDIS_URL,
        "KEY_PREFIX": "near-replaced",
    }
    with override_settings(CACHES={**settings.CACHES, "replaced": alias}):
        held = get_backend("replaced")
    threads = set(threading.enumerate())
    assert tracker_for(held) is None
    assert copies_for(held, "f", 5, False) is None
    assert set(threading.enumerate()) == threads


def change_on_down(index, barrier, name, function):
    barrier.wait()
    redis.Redis.from_url(settings.CACHES["down"]["LOCATION"]).set(name, 7)
    function.invalidate(name)  # acknowledged when this returns


@pytest.mark.parametrize("loss", ["restart", "pause"])
def test_no_copy_outlives_an_acknowledged_invalidation_across_a_server_loss(
    private_redis, down_alias, unique, loss
):
    """Every single connection loss: a restarted server (both connections closed) or a paused
    one (nothing closed, invalidations delayed): a change acknowledged in another process is
    never answered from a copy."""

    @cache_aside(timeout=60, cache=down_alias, local=True, key_maker=lambda name: (name,))
    def on_down(name):
        return int(redis.Redis.from_url(settings.CACHES["down"]["LOCATION"]).get(name) or 0)

    tracker = tracker_for(get_backend(down_alias))
    assert tracker is not None and tracker.wait_until_ready(10)
    assert on_down(unique) == 0
    copied(on_down, unique)
    if loss == "restart":
        private_redis.restart()
    else:
        private_redis.pause()
        time.sleep(0.2)  # longer than nothing: the server answers nobody meanwhile
        private_redis.resume()
    run_processes(1, change_on_down, unique, on_down)
    assert on_down(unique) == 7  # at once: the copy was dropped, or is not trusted
