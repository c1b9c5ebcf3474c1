"""Every feature on a Redis Cluster alias (django-valkey's ClusterValkeyCache on a local
3-primary cluster): no request ever crosses slots, and clear_cache scans every primary.

The contract suite (tests/contract) runs on the same alias; these tests add what it does not
cover: views, warm-up, clearing, hand-off, the watchdog, and where keys land.
"""

from __future__ import annotations

import io
import threading
import time

import pytest
import valkey
from django.core.cache import caches
from django.core.management import call_command
from django.http import HttpResponse
from django.test import RequestFactory
from django.views.decorators.vary import vary_on_headers
from hypothesis import given, settings
from hypothesis import strategies as st
from valkey.crc import key_slot

from cache_tools import Call, cache_aside, cache_view, lock, update, warmup
from cache_tools.backends import get_backend


def _nodes(cluster):
    return [valkey.Valkey(port=port, socket_timeout=2) for _, port in cluster.startup_nodes]


def crossslot_errors(cluster) -> int:
    """CROSSSLOT replies the cluster's nodes have sent since they started."""
    total = 0
    for node in _nodes(cluster):
        stats = node.info("errorstats")
        total += int(stats.get("errorstat_CROSSSLOT", {}).get("count", 0))
        node.close()
    return total


@pytest.fixture
def no_crossslot(redis_cluster, cluster_alias):
    before = crossslot_errors(redis_cluster)
    yield cluster_alias
    assert crossslot_errors(redis_cluster) == before


def test_cache_aside_single_flight_stale_statistics_and_invalidate_all(no_crossslot, unique):
    calls = []
    started = threading.Barrier(8)

    @cache_aside(cache=no_crossslot, timeout=0.3, stale=30, key_maker=f"{unique}:{{x}}")
    def slow(x):
        calls.append(x)
        time.sleep(0.2)
        return [x, len(calls)]

    def caller():
        started.wait()
        slow(1)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]  # single flight across the herd

    time.sleep(0.35)  # fresh for 0.3 s, then stale
    assert slow(1) == [1, 1]  # served stale while one caller refreshes
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [1, 1]
    info = slow.cache_info()
    assert info.misses >= 1 and info.stale_hits >= 1 and info.hits >= 7

    for x in range(2, 12):
        slow(x)
    slow.invalidate_all()
    calls.clear()
    slow(1)
    slow(5)
    assert calls == [1, 5]


def test_lock_hand_off_fencing_and_watchdog(no_crossslot, unique):
    fences, handed = [], threading.Event()

    def second():
        with lock(unique, cache=no_crossslot, timeout=5) as handle:
            fences.append(handle.fence)
            handed.set()

    with lock(unique, cache=no_crossslot, timeout=0.5) as first:
        fences.append(first.fence)
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(1.2)  # the watchdog renews the 0.5 s lease; the waiter must not get in
        assert not handed.is_set() and not first.lost
        released_at = time.monotonic()
    assert handed.wait(5)
    hand_off = time.monotonic() - released_at
    waiter.join()
    assert fences[0] < fences[1]
    assert hand_off < 0.5  # woken by the release, not by polling out a TTL


def test_update_and_cache_view_with_vary(no_crossslot, unique):
    results = [update(f"{unique}:n", lambda n: (n or 0) + 1, cache=no_crossslot) for _ in range(5)]
    assert results == [1, 2, 3, 4, 5]

    rendered = []

    @cache_view(timeout=60, cache=no_crossslot)
    @vary_on_headers("Accept-Language")
    def page(request):
        rendered.append(request.headers.get("Accept-Language"))
        return HttpResponse(f"hello {request.headers.get('Accept-Language')}")

    factory = RequestFactory()
    path = f"/{unique}/"
    french = page(factory.get(path, HTTP_ACCEPT_LANGUAGE="fr")).content
    german = page(factory.get(path, HTTP_ACCEPT_LANGUAGE="de")).content
    assert page(factory.get(path, HTTP_ACCEPT_LANGUAGE="fr")).content == french == b"hello fr"
    assert german == b"hello de" and rendered == ["fr", "de"]
    page.invalidate(path)
    page(factory.get(path, HTTP_ACCEPT_LANGUAGE="fr"))
    assert rendered == ["fr", "de", "fr"]


def test_warm_cache_and_clear_cache_scan_every_primary_and_only_our_namespace(
    no_crossslot, redis_cluster, unique
):
    @cache_aside(cache=no_crossslot, timeout=60, key_maker=f"{unique}:{{x}}")
    def square(x):
        return x * x

    warmup.register(square, [Call(x) for x in range(60)], name=f"{unique}-squares")
    out = io.StringIO()
    call_command("warm_cache", f"{unique}-squares", stdout=out)
    assert "computed 60" in out.getvalue()

    # A function's entries share its slot; plain keys of the alias spread over the primaries.
    for n in range(60):
        caches[no_crossslot].set(f"{unique}:plain:{n}", n)
    backend = get_backend(no_crossslot)
    ours = backend.namespace_pattern("*")
    nodes = _nodes(redis_cluster)
    primaries = [n for n in nodes if n.info("replication")["role"] == "master"]
    assert all(list(n.scan_iter(match=ours)) for n in primaries)  # keys on every primary
    foreign = [f"other-app:{unique}:{n}" for n in range(30)]
    cluster_client = backend.client()
    for key in foreign:
        cluster_client.set(key, 1)

    out = io.StringIO()
    call_command("clear_cache", "--cache", no_crossslot, stdout=out)
    assert not any(list(n.scan_iter(match=ours)) for n in primaries)
    assert all(cluster_client.get(key) == b"1" for key in foreign)
    assert caches[no_crossslot].get(f"{unique}:plain:7") is None
    assert not square.is_cached(7)
    for node in nodes:
        node.close()


@settings(max_examples=200, deadline=None)
@given(
    function=st.text(min_size=1, max_size=40),
    argument=st.text(max_size=40),
    lock_name=st.text(min_size=1, max_size=40),
)
def test_every_key_of_an_entry_or_lock_hashes_to_one_slot(function, argument, lock_name):
    """Whatever the names (braces included), the keys a script touches share one slot."""
    from cache_tools.keys import safe_key

    backend = get_backend("valkey")  # key layout only; no server needed
    entry = backend._entry_keys(safe_key(function), safe_key(argument), scope="s")
    locks = [entry.lock, backend._lock_keys(safe_key(lock_name))]
    assert len({key_slot(str(key).encode()) for key in (entry.value, entry.generation)}) == 1
    for lock_keys in locks:
        assert len(lock_keys.all()) == 6
        assert len({key_slot(str(key).encode()) for key in lock_keys.all()}) == 1
    entry_script_keys = [entry.value, entry.generation, *entry.lock.all()]
    assert len({key_slot(str(key).encode()) for key in entry_script_keys}) == 1
