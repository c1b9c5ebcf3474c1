"""The hot path's shortcuts give what the libraries they skip would: commands packed by
cache_tools.backends._wire are byte for byte redis-py's, values decoded without
django-redis's int() attempt are django-redis's."""

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cache_tools.backends import get_backend
from cache_tools.backends._wire import _pack

parts = st.lists(
    st.one_of(st.text(), st.binary(), st.integers(), st.floats()), min_size=1, max_size=8
)


def unconnected() -> Any:
    """A connection made as the alias's pool makes them (it packs; it never connects)."""
    pool = get_backend().client().connection_pool
    return pool.connection_class(**pool.connection_kwargs)


@hypothesis_settings(max_examples=300, deadline=None)
@given(parts)
def test_commands_are_packed_as_redis_py_packs_them(parts):
    connection = unconnected()
    expected = b"".join(bytes(chunk) for chunk in connection.pack_command("EVALSHA", *parts))
    assert _pack(["EVALSHA", *parts]) == expected


def test_values_redis_py_refuses_or_converts_are_left_to_it():
    assert _pack(["SET", "k", True]) is None
    assert _pack(["SET", "k", None]) is None
    assert _pack(["SET", "k", memoryview(b"v")]) is None


values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary()
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=8,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(values)
def test_the_decode_shortcut_agrees_with_django_redis(value):
    """Pickles skip django-redis's int() attempt; everything it stores decodes as it would
    decode it (ints are stored as digits, not pickled)."""
    from django.core.cache import cache

    inner = cache.client
    payload = inner.encode(value)
    payload = payload if isinstance(payload, bytes) else str(payload).encode()
    codec = get_backend().connection()[1]
    assert codec.decode != inner.decode  # the shortcut is in use on this alias
    assert codec.decode(payload) == inner.decode(payload) == value


def test_pools_the_wire_must_not_use_are_left_to_the_client():
    """redis-py's client-side cache (Redis >= 7.4, so not run against a server here) answers
    reads on its connections by the command last given to send_command; single-connection and
    cluster clients have no pool of their own. The wire leaves all of them to the client."""
    import redis
    from django.conf import settings
    from redis.cache import CacheConfig

    from cache_tools.backends._wire import _pool_of

    plain = redis.Redis()
    assert _pool_of(plain) is plain.connection_pool
    assert _pool_of(redis.Redis(protocol=3, cache_config=CacheConfig())) is None
    single = redis.Redis.from_url(settings.REDIS_URL, single_connection_client=True)
    assert _pool_of(single) is None
    single.close()
    assert _pool_of(redis.RedisCluster.__new__(redis.RedisCluster)) is None


# Connections kept by threads -------------------------------------------------------------


def kept_wire(max_connections: int = 100, url: str | None = None) -> tuple[Any, Any]:
    """A wire on a client of its own (on ``url``, else the suite's server), with a pool of
    ``max_connections``."""
    import redis
    from django.conf import settings

    from cache_tools.backends._wire import Wire

    client = redis.Redis.from_url(url or settings.REDIS_URL, max_connections=max_connections)
    return Wire(client, (redis.ConnectionError, redis.TimeoutError), (redis.ResponseError,)), client


def test_a_thread_keeps_one_connection_and_gives_it_back_when_it_ends():
    """A thread sends its hot commands on a connection of its own (no pool check per
    command); when the thread ends, the connection goes back to the pool for the next."""
    wire, client = kept_wire()
    client.set("kept:k", "v")
    replies = []

    def hits():
        replies.extend(wire.send(("GET", "kept:k")) for _ in range(3))

    for _ in range(30):  # one thread after another: each finds the last one's connection
        thread = threading.Thread(target=hits)
        thread.start()
        thread.join()
    assert replies == [b"v"] * 90
    pool = client.connection_pool
    assert len(pool._in_use_connections) == 0  # every kept connection was given back
    assert pool._created_connections <= 2  # one reused by all 30 threads (plus client.set's)
    client.close()


def test_threads_keep_at_most_a_quarter_of_the_pool():
    """The others take a connection per command, as the client does: a small pool is never
    exhausted by threads that keep theirs, though two aliases (wires) share it."""
    import redis

    from cache_tools.backends._wire import Wire

    wire, client = kept_wire(max_connections=8)
    other = Wire(client, (redis.ConnectionError, redis.TimeoutError), (redis.ResponseError,))
    client.set("kept:k", "v")
    ready, go = threading.Barrier(7), threading.Event()
    errors: list[BaseException] = []

    def hits():
        try:
            assert wire.send(("GET", "kept:k")) == other.send(("GET", "kept:k")) == b"v"
            ready.wait()
            go.wait()
            for _ in range(20):
                assert wire.send(("GET", "kept:k")) == other.send(("GET", "kept:k")) == b"v"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hits) for _ in range(6)]
    for thread in threads:
        thread.start()
    ready.wait()
    pool = client.connection_pool
    assert len(pool._in_use_connections) == 2  # kept (by one or two threads); the rest given back
    go.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert pool._created_connections <= 8
    client.close()


def _hits_in_child(wire: Any, count: int, conn: Any) -> None:
    try:
        conn.send([wire.send(("GET", f"kept:{n}")) for n in range(count)])
    except BaseException as exc:  # reported to the parent, which asserts
        conn.send(repr(exc))


def test_a_forked_child_never_shares_the_parents_connection():
    """A child forked from a thread that kept a connection gets its own: on a shared socket,
    the two processes' replies would answer each other's commands."""
    import multiprocessing

    wire, client = kept_wire()
    for n in range(200):
        client.set(f"kept:{n}", n)
    assert wire.send(("GET", "kept:0")) == b"0"  # the parent keeps a connection now
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    child = context.Process(target=_hits_in_child, args=(wire, 200, theirs))
    child.start()
    mine = [wire.send(("GET", f"kept:{n}")) for n in range(200)]
    child.join(30)
    assert child.exitcode == 0
    assert ours.recv() == [str(n).encode() for n in range(200)]
    assert mine == [str(n).encode() for n in range(200)]
    client.close()


def test_a_hit_interrupted_in_its_read_never_answers_the_next_command(private_redis):
    """A signal that interrupts a thread waiting for a reply leaves that reply on its way:
    the connection is closed, so the next command gets its own reply, not the late one."""
    import signal

    class Interrupted(Exception):
        pass

    def interrupt(signum, frame):
        raise Interrupted

    wire, client = kept_wire(url=private_redis.url)
    client.set("kept:a", "a")
    client.set("kept:b", "b")
    assert wire.send(("GET", "kept:a")) == b"a"
    previous = signal.signal(signal.SIGALRM, interrupt)
    private_redis.pause()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            wire.send(("GET", "kept:a"))  # sent; the server answers only once resumed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        private_redis.resume()
    assert wire.send(("GET", "kept:b")) == b"b"
    client.close()


def test_a_command_interrupted_between_its_send_and_its_read_never_answers_the_next():
    """The same for an interruption that lands just after the request left (a signal
    handler's exception, a KeyboardInterrupt), which the client library's own handlers do
    not see: raised here by a trace function as ``send_packed_command`` returns."""
    import sys

    class Interrupted(Exception):
        pass

    def on_return(frame, event, arg):
        if event == "return":
            raise Interrupted
        return on_return

    def trace(frame, event, arg):
        return on_return if frame.f_code.co_name == "send_packed_command" else None

    wire, client = kept_wire()
    client.set("kept:a", "a")
    client.set("kept:b", "b")
    assert wire.send(("GET", "kept:a")) == b"a"
    sys.settrace(trace)
    try:
        with pytest.raises(Interrupted):
            wire.send(("GET", "kept:a"))
    finally:
        sys.settrace(None)
    assert wire.send(("GET", "kept:b")) == b"b"
    client.close()


def test_a_kept_connection_survives_its_pool_being_disconnected():
    """``pool.disconnect()`` (django-redis's ``CLOSE_CONNECTION`` at the end of each request,
    a settings change) closes the connections a thread keeps too: the next command opens it
    again, on the same thread, without going through the client."""
    wire, client = kept_wire()
    client.set("kept:k", "v")
    assert wire.send(("GET", "kept:k")) == b"v"
    pool = client.connection_pool
    (kept,) = pool._in_use_connections
    pool.disconnect()
    assert kept._sock is None
    assert wire.send(("GET", "kept:k")) == b"v"
    assert kept._sock is not None and pool._in_use_connections == {kept}
    client.close()
