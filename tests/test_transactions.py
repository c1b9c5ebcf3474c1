"""Locks, invalidations and cached values inside database transactions, on a real PostgreSQL
(the ``pgserver`` wheel) and on SQLite, with several processes that each hold their own
connection; interleavings are forced with events.

* A lock released inside ``atomic()`` is held until COMMIT (or ROLLBACK): the next holder sees
  what the last one wrote (the seed's fetch-then-create runs once).
* An invalidation made before COMMIT is made again at COMMIT: a reader that computed from the
  data as it was meanwhile does not leave it behind.
* A value computed by a transaction that has written is its caller's alone.
"""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings
from django.db import IntegrityError, connections, transaction

from cache_tools import LockError, cache_aside, lock, lock_decorator
from cache_tools.testing.contract import FORK, run_processes
from testproject.demo.models import Thing
from testproject.shop.models import Product

DATABASES = ["lite", "pg"]
pytestmark = [
    pytest.mark.django_db(transaction=True, databases=DATABASES),
    pytest.mark.parametrize("using", DATABASES),
]


def raw():
    return redis.Redis.from_url(settings.REDIS_URL)


def fork(count, target, *args):
    """``target`` in ``count`` forked processes, each with connections of its own."""
    connections.close_all()  # never hand a child this process's connection
    return run_processes(count, target, *args)


def counter(name):
    return f"{settings.TEST_PREFIX}:tx:{name}"


# 1. The seed's fetch-then-create, inside a transaction ----------------------------------------


def make_fetch(using):
    @lock_decorator(key_maker=lambda name: f"thing:{using}:{name}", timeout=10, using=using)
    def fetch_remote_thing(name):
        existing = Thing.objects.using(using).filter(name=name).first()
        if existing is not None:
            return existing.pk, False
        raw().incr(counter(f"{name}:fetches"))
        time.sleep(0.2)  # the remote fetch
        return Thing.objects.using(using).create(name=name, result="remote").pk, True

    return fetch_remote_thing


def request_in_a_transaction(index, barrier, name, using, returned):
    fetch = make_fetch(using)
    barrier.wait()
    if index:
        assert returned.wait(10)  # the first request's locked call has returned
    try:
        with transaction.atomic(using=using):
            pk, _ = fetch(name)
            if not index:
                returned.set()
                time.sleep(0.3)  # the rest of the view, before COMMIT
    except IntegrityError:
        return "duplicate"
    return pk


def test_a_lock_released_inside_a_transaction_is_held_until_commit(unique, using):
    returned = FORK.Event()
    pks = fork(4, request_in_a_transaction, unique, using, returned)
    assert int(raw().get(counter(f"{unique}:fetches"))) == 1  # before: 2 fetches, 2 rows
    assert len(set(pks)) == 1 and "duplicate" not in pks
    assert Thing.objects.using(using).filter(name=unique).count() == 1


def with_lock_in_a_transaction(index, barrier, name, using, entered, committed):
    barrier.wait()
    if index:
        assert entered.wait(10)
        started = time.monotonic()
        with lock(name, timeout=10, using=using):
            return time.monotonic() - started, committed.is_set()
    with transaction.atomic(using=using):
        # Runs right after COMMIT, before the lock's release (callbacks run in their order):
        # set after the block, it could come after the waiter had the lock and looked.
        transaction.on_commit(committed.set, using=using)
        with lock(name, timeout=10, using=using) as handle:
            pass
        entered.set()
        assert handle.held  # released at the end of the block, not here
        time.sleep(0.3)
    return None


def test_with_lock_inside_atomic_is_held_until_commit(unique, using):
    entered, committed = FORK.Event(), FORK.Event()
    _, (waited, after_commit) = fork(
        2, with_lock_in_a_transaction, unique, using, entered, committed
    )
    assert after_commit and waited >= 0.25  # before: taken at once, before the COMMIT


def rolled_back_holder(index, barrier, name, using, rolled_back):
    barrier.wait()
    if index:
        assert rolled_back.wait(10)
        started = time.monotonic()
        with lock(name, timeout=30, blocking_timeout=10, using=using):
            return time.monotonic() - started
    try:
        with transaction.atomic(using=using):
            with lock(name, timeout=30, using=using):
                pass
            raise RuntimeError("the view failed")
    except RuntimeError:
        rolled_back.set()
    time.sleep(2)  # stay alive: the release is not the process's exit
    return None


def test_a_rollback_releases_the_lock_promptly(unique, using):
    rolled_back = FORK.Event()
    _, waited = fork(2, rolled_back_holder, unique, using, rolled_back)
    assert waited < 0.5  # not at the TTL (30 s)


def test_a_rolled_back_savepoint_keeps_the_lock_and_a_second_take_in_the_transaction_reclaims_it(
    unique, using
):
    with transaction.atomic(using=using):
        with transaction.atomic(using=using):
            handle = lock(unique, timeout=10, using=using)
            handle.acquire()
            handle.release()  # held to the end of the transaction
        try:
            with transaction.atomic(using=using):
                raise RuntimeError("a savepoint rolls back")
        except RuntimeError:
            pass
        assert handle.held and lock(unique, using=using).locked()
        with lock(unique, timeout=10, blocking_timeout=0, using=using) as again:  # no wait
            assert again.fence == handle.fence and not handle.held
    deadline = time.monotonic() + 1
    while lock(unique, using=using).locked():  # released right after the COMMIT
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_until_commit_false_releases_at_once_and_true_needs_a_transaction(unique, using):
    with transaction.atomic(using=using):
        with lock(unique, timeout=10, until_commit=False, using=using) as handle:
            pass
        assert not handle.held and not lock(unique, using=using).locked()
    with pytest.raises(LockError, match="until_commit=True"):
        lock(unique, until_commit=True, using=using).acquire()


# 2. Invalidation before COMMIT ------------------------------------------------------------


def make_price(using, computing=None, go_on=None):
    @cache_aside(timeout=300, key_maker=lambda pk: ("price", using, pk))
    def price(pk):
        amount = Product.objects.using(using).get(pk=pk).price
        if computing is not None and not computing.is_set():
            computing.set()
            assert go_on.wait(10)
        return int(amount)

    return price


def writer_then_reader(index, barrier, pk, using, how, invalidated, read):
    price = make_price(using)
    barrier.wait()
    if index:  # a reader in another process, between the invalidation and the COMMIT
        assert invalidated.wait(10)
        value = price(pk)
        read.set()
        return value
    with transaction.atomic(using=using):
        Product.objects.using(using).filter(pk=pk).update(price=200)
        price.invalidate(pk) if how == "invalidate" else price.invalidate_all()
        invalidated.set()
        assert read.wait(10)
    return None


@pytest.mark.parametrize("how", ["invalidate", "invalidate_all"])
def test_an_invalidation_before_commit_leaves_no_old_value_behind(unique, using, how):
    pk = Product.objects.using(using).create(name=unique, price=100).pk
    price = make_price(using)
    assert price(pk) == 100
    invalidated, read = FORK.Event(), FORK.Event()
    _, seen = fork(2, writer_then_reader, pk, using, how, invalidated, read)
    assert seen == 100  # the reader computed from the committed row, and stored it
    assert price(pk) == 200  # before: 100 for the whole timeout


def reader_across_the_commit(index, barrier, pk, using, computing, go_on):
    barrier.wait()
    if index:
        return make_price(using, computing, go_on)(pk)  # reads 100, stores after the COMMIT
    price = make_price(using)
    assert computing.wait(10)
    with transaction.atomic(using=using):
        Product.objects.using(using).filter(pk=pk).update(price=200)
        price.invalidate(pk)
    go_on.set()
    return None


def test_a_computation_that_read_before_the_commit_stores_nothing_after_it(unique, using):
    pk = Product.objects.using(using).create(name=unique, price=100).pk
    computing, go_on = FORK.Event(), FORK.Event()
    _, seen = fork(2, reader_across_the_commit, pk, using, computing, go_on)
    assert seen == 100
    assert make_price(using)(pk) == 200


# 3. Values computed by a transaction that has written ------------------------------------------


def test_a_rolled_back_value_is_never_served(unique, using):
    pk = Product.objects.using(using).create(name=unique, price=100).pk
    price = make_price(using)
    try:
        with transaction.atomic(using=using):
            Product.objects.using(using).filter(pk=pk).update(price=300)
            assert price(pk) == 300  # the caller gets what its transaction sees
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert fork(1, lambda index, barrier: make_price(using)(pk)) == [100]  # before: 300
    assert price(pk) == 100


def test_a_read_only_transaction_keeps_single_flight_and_hits(unique, using):
    pk = Product.objects.using(using).create(name=unique, price=100).pk
    price = make_price(using)
    price.cache_clear_stats()
    with transaction.atomic(using=using):
        assert price(pk) == 100 and price(pk) == 100
    info = price.cache_info()
    assert (info.misses, info.hits) == (1, 1)  # stored though inside a transaction
