"""Tags beyond the adapters' contract (tests/contract runs that on every adapter): hostile
names, views, async code, transactions, per-process copies, the server's memory, and a cluster
invalidating for a function this process never imported."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import redis
from django.conf import settings
from django.db import connections, transaction
from django.http import HttpResponse
from django.test import RequestFactory
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cache_tools import ainvalidate_tags, cache_aside, cache_view, invalidate_tags, stats, tags
from cache_tools.backends import get_backend
from cache_tools.testing.contract import FORK, run_processes
from testproject.shop.models import Product

factory = RequestFactory()


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=300), min_size=2, max_size=2, unique=True))
def test_distinct_tags_get_distinct_keys_inside_the_namespace(names):
    for alias in ("default", "memcached-safe"):
        backend = get_backend("default" if alias == "default" else "locmem")
        keys = [backend.tag_key(name, "some.function") for name in names]
        assert keys[0] != keys[1]
        for key in keys:
            assert key.name.startswith("ct:t:") and len(key) <= 250
            assert all(c.isprintable() and not c.isspace() for c in key)


@pytest.mark.parametrize(
    ("returned", "message"),
    [("product:1", "not one str"), ([1], "returned 1"), ([""], "returned ''")],
)
def test_tags_must_be_an_iterable_of_non_empty_strings(unique, returned, message):
    @cache_aside(timeout=60, tags=lambda: returned, key_maker=lambda: unique)
    def tagged():
        return 1

    with pytest.raises(TypeError, match=message):
        tagged()
    with pytest.raises(TypeError, match="tags must be a callable"):
        cache_aside(tags=["product:1"])
    with pytest.raises(TypeError, match="returned 7"):
        invalidate_tags(7)


def test_a_view_is_invalidated_by_its_tags(unique):
    counter = itertools.count(1)

    @cache_view(timeout=60, tags=lambda request, pk: [f"{unique}:product:{pk}"])
    def page(request, pk):
        return HttpResponse(f"product {pk}, render {next(counter)}")

    def get(pk):
        return page(factory.get(f"/{unique}/{pk}"), pk=pk)

    assert [get(1)["X-Cache"], get(1)["X-Cache"], get(2)["X-Cache"]] == ["miss", "hit", "miss"]
    invalidate_tags(f"{unique}:product:1")
    first, second = get(1), get(2)
    assert (first["X-Cache"], second["X-Cache"]) == ("miss", "hit")
    assert first.content.decode() == "product 1, render 3"


def test_async_functions_and_ainvalidate_tags(unique):
    calls = []

    @cache_aside(timeout=60, tags=lambda n: [f"{unique}:{n}"], key_maker=lambda n: (unique, n))
    async def tagged(n):
        calls.append(n)
        return n

    async def scenario():
        await tagged(1), await tagged(1)
        await ainvalidate_tags(f"{unique}:1")
        await tagged(1)

    asyncio.run(scenario())
    assert calls == [1, 1]


def test_tag_versions_live_as_long_as_their_entries_and_no_longer(unique):
    client = redis.Redis.from_url(settings.REDIS_URL)
    backend = get_backend()

    @cache_aside(timeout=2, tags=lambda: [f"{unique}:short"], key_maker=lambda: unique)
    def short():
        return 1

    @cache_aside(timeout=None, tags=lambda: [f"{unique}:forever"], key_maker=lambda: unique)
    def forever():
        return 1

    short(), forever()
    # At least the entry's life; at most the window of the computation that made it (the
    # lock's 30 s, twice, and 10 s): a tag nobody uses does not stay.
    assert 2000 <= client.pttl(backend.tag_key(f"{unique}:short", "")) <= 70000
    assert client.pttl(backend.tag_key(f"{unique}:forever", "")) == -1


def test_a_tagged_hit_is_one_round_trip(unique):
    @cache_aside(timeout=60, tags=lambda: ["a", "b", "c"], key_maker=lambda: unique)
    def tagged():
        return "value"

    tagged()
    client = redis.Redis.from_url(settings.REDIS_URL)
    before = client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0)
    stats_before = client.info("stats")["total_commands_processed"]
    assert tagged() == "value"
    assert client.info("commandstats")["cmdstat_mget"]["calls"] == before + 1
    # MGET, and the two INFO calls of this test (and nothing else from this process)
    assert client.info("stats")["total_commands_processed"] - stats_before <= 3


# Transactions and other processes ------------------------------------------------------------


@cache_aside(timeout=300, tags=lambda name: [f"price:{name}"])
def price(name):
    return int(Product.objects.using("lite").get(name=name).price)


def invalidator_and_reader(index, barrier, name, invalidated, read):
    barrier.wait()
    if index:
        assert invalidated.wait(10)
        old = price(name)  # computed from the committed data, and stored
        read.set()
        return old
    with transaction.atomic(using="lite"):
        Product.objects.using("lite").filter(name=name).update(price=2)
        invalidate_tags(f"price:{name}")
        invalidated.set()
        assert read.wait(10)
    return None


@pytest.mark.django_db(transaction=True, databases=["lite"])
def test_invalidate_tags_inside_a_transaction_is_done_again_at_commit(unique):
    Product.objects.using("lite").create(name=unique, price=1)
    assert price(unique) == 1
    invalidated, read = FORK.Event(), FORK.Event()
    connections.close_all()
    _, old = run_processes(2, invalidator_and_reader, unique, invalidated, read)
    assert old == 1 and price(unique) == 2  # without the repeat at COMMIT: 1 for 300 s


@cache_aside(timeout=300, tags=lambda name: [f"copy:{name}"], local=True)
def copied(name):
    return time.time()


def copy_reader(index, barrier, name, holding, changed_at, seen_at):
    barrier.wait()
    if index:
        assert holding.wait(10)
        invalidate_tags(f"copy:{name}")
        changed_at.value = time.monotonic()
        return None
    first = copied(name)
    assert copied(name) == first
    holding.set()
    deadline = time.monotonic() + 5
    while copied(name) == first:
        assert time.monotonic() < deadline, "the copy outlived its tag"
    seen_at.value = time.monotonic()
    return None


def test_local_copies_in_other_processes_follow_their_tags(unique):
    holding = FORK.Event()
    changed_at, seen_at = FORK.Value("d", 0.0), FORK.Value("d", 0.0)
    run_processes(2, copy_reader, unique, holding, changed_at, seen_at)
    assert seen_at.value - changed_at.value < 0.1


def test_a_cluster_invalidates_functions_only_other_processes_imported(
    cluster_alias, unique, monkeypatch
):
    @cache_aside(timeout=60, cache=cluster_alias, tags=lambda: [unique], key_maker=lambda: 1)
    def elsewhere():
        return time.time()

    first = elsewhere()
    stats.flush()  # the process notes the functions it used on the server
    monkeypatch.setattr(tags, "_tagged", {})  # as a process that never imported it
    invalidate_tags(unique, cache=cluster_alias)
    assert elsewhere() != first


def test_many_tags_are_bumped_in_bounded_scripts(unique, monkeypatch):
    """A transaction that wrote thousands of rows: its tags go in scripts of at most
    ``TAGS_PER_SCRIPT`` keys, and every one of them is bumped (the scripts this adapter sends
    are watched on their way, and run as sent)."""
    from cache_tools.backends.redis import TAGS_PER_SCRIPT

    names = [f"{unique}:{n}" for n in range(2 * TAGS_PER_SCRIPT + 500)]

    @cache_aside(timeout=60, tags=lambda n: [names[n]], key_maker=lambda n: (unique, n))
    def row(n):
        return time.time()

    firsts = [row(0), row(len(names) - 1)]
    transport = get_backend().transport
    sent, script = [], transport.script

    def watched(name, keys, args):
        if name == "tags_bump":
            sent.append(len(keys))
        return script(name, keys, args)

    monkeypatch.setattr(transport, "script", watched)
    invalidate_tags(*names)
    assert sent == [TAGS_PER_SCRIPT, TAGS_PER_SCRIPT, 500]
    assert not any(a == b for a, b in zip([row(0), row(len(names) - 1)], firsts, strict=True))
