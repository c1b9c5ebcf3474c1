"""Through a real TCP proxy that stalls, cuts off and duplicates replies (the requests reach the
real server at once): each call waits at most one socket timeout, no request that may have
been applied is sent again (counted on the server), no lock is reported lost that was not, and
a reply that is not its request's is never returned."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from cache_tools import LockUnavailable, OutcomeUnknown, cache_aside, lock, orphans, stats
from cache_tools.backends import get_backend
from cache_tools.testing.proxy import FaultyProxy

TIMEOUT = 0.5


@pytest.fixture
def proxy():
    address = urlsplit(settings.REDIS_URL)
    with FaultyProxy((address.hostname, address.port)) as running:
        yield running


@pytest.fixture
def faulty(proxy, unique):
    """An alias whose every connection goes through the proxy, with a short socket timeout."""
    alias = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": proxy.url,
        "KEY_PREFIX": f"{settings.TEST_PREFIX}-faulty-{unique}",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": TIMEOUT, "SOCKET_TIMEOUT": TIMEOUT},
    }
    with override_settings(CACHES={**settings.CACHES, "faulty": alias}):
        yield "faulty"


def raw():
    return redis.Redis.from_url(settings.REDIS_URL)


def timed(call):
    started = time.monotonic()
    try:
        outcome = call()
    except Exception as exc:
        outcome = exc
    return outcome, time.monotonic() - started


def test_every_call_on_a_stalled_server_waits_one_socket_timeout(faulty, proxy, unique):
    @cache_aside(timeout=60, cache=faulty, key_maker=lambda x: (unique, x))
    def double(x):
        return 2 * x

    assert double(1) == 2  # stored: the next call is a hit
    proxy.delay = 4 * TIMEOUT
    hit = timed(lambda: double(1))
    miss = timed(lambda: double(2))
    taken = timed(lambda: lock(f"{unique}-lock", cache=faulty, timeout=5).acquire())
    proxy.delay = 0
    assert hit[0] == 2 and miss[0] == 4  # computed without the cache
    assert isinstance(taken[0], LockUnavailable)
    for outcome, seconds in (hit, miss, taken):
        assert seconds < 1.5 * TIMEOUT, (outcome, seconds)  # before: two timeouts each


def test_a_request_whose_reply_was_lost_is_not_sent_again(faulty, proxy, unique):
    @cache_aside(timeout=60, cache=faulty, key_maker=lambda x: (unique, x))
    def counted(x):
        return x

    counted.invalidate_all()  # its script is loaded: a lost reply is then its effect's
    counted.cache_clear_stats()
    counted(1)  # a miss, then 49 hits
    for _ in range(49):
        counted(1)
    generation = counted.flight.keys(counted.argument_key((1,), {})).generation
    before = int(raw().get(generation))
    proxy.delay = 3 * TIMEOUT
    stats.flush()  # its reply comes too late: the counts may have been added
    with pytest.raises(OutcomeUnknown):  # so the caller knows; not sent twice
        counted.invalidate_all()
    proxy.delay = 0
    time.sleep(3 * TIMEOUT)  # the held-back replies drain (nothing tells when)
    stats.flush()
    assert int(raw().get(generation)) == before + 1  # bumped once, not twice
    info = counted.cache_info()
    assert (info.hits, info.misses) == (49, 1)  # before: 98 and 2


@pytest.mark.parametrize("lost", ["delayed", "cut off"])
def test_a_release_whose_reply_was_lost_raises_no_false_lock_lost(faulty, proxy, unique, lost):
    handle = lock(unique, cache=faulty, timeout=5)
    with handle:
        if lost == "delayed":
            proxy.delay = 3 * TIMEOUT
        else:
            proxy.truncate_next()
    proxy.delay = 0  # the release's reply was lost: no LockLost (before: sent again, raised)
    assert not handle.lost
    deadline = time.monotonic() + 5
    while orphans.pending():  # the release is settled in the background
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with lock(unique, cache=faulty, timeout=5, blocking_timeout=0):  # free
        pass


def test_a_duplicated_reply_is_never_taken_for_the_next_requests(faulty, proxy, unique):
    @cache_aside(timeout=60, cache=faulty, key_maker=lambda x: (unique, x))
    def named(x):
        return f"value of {x}"

    for key in range(4):
        assert named(key) == f"value of {key}"
    proxy.duplicate_next()
    seen = [(key, named(key)) for _ in range(50) for key in range(4)]
    assert all(value == f"value of {key}" for key, value in seen)  # before: the previous key's
    proxy.duplicate_next()
    named(0)
    for _ in range(20):  # a stray reply must not answer a lock's script
        with lock(f"{unique}-lock", cache=faulty, timeout=5, blocking_timeout=1) as handle:
            assert handle.fence > 0


def test_a_reply_cut_off_closes_the_connection_and_the_next_call_works(faulty, proxy, unique):
    @cache_aside(timeout=60, cache=faulty, key_maker=lambda x: (unique, x))
    def named(x):
        return f"value of {x}"

    assert named(1) == "value of 1"
    proxy.truncate_next()
    assert named(1) == "value of 1"  # computed without the cache
    assert named(1) == "value of 1" and named.cache_info().hits >= 1


def test_an_exhausted_pool_is_an_outage_not_an_unknown_outcome(faulty, unique):
    alias = {**settings.CACHES[faulty]}
    alias["OPTIONS"] = {**alias["OPTIONS"], "CONNECTION_POOL_KWARGS": {"max_connections": 1}}
    with override_settings(CACHES={**settings.CACHES, "tiny": alias}):
        backend = get_backend("tiny")
        pool = backend.client().connection_pool
        busy = pool.get_connection()  # the only connection, in use
        try:
            with pytest.raises(LockUnavailable) as raised:
                lock(unique, cache="tiny").acquire()
            assert not raised.value.outcome_unknown  # nothing was sent
            assert orphans.pending() == 0  # so no release is scheduled for it
        finally:
            pool.release(busy)
