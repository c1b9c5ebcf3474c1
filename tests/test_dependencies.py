"""Invalidation that follows the data (``depends_on``), on a real PostgreSQL and on SQLite,
with several processes that each hold their own connection; interleavings forced by events.

* Every kind of write (with and without signals) invalidates the entries depending on its
  model after COMMIT, and not before: an entry stays served while the transaction is open, and
  a reader that computes from the committed data meanwhile leaves nothing behind.
* A ROLLBACK invalidates nothing; autocommit writes invalidate at once.
* ``depends_on={Model: instance -> tags}``: a write through an instance voids only its tags,
  a write without instances the whole function.
* Per-process copies in other processes follow.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connections, transaction

from cache_tools import cache_aside, invalidate_model
from cache_tools.dependencies import model_tag
from cache_tools.testing.contract import FORK, run_processes
from testproject.shop.models import Category, Product, Review

DATABASES = ["lite", "pg"]
pytestmark = [
    pytest.mark.django_db(transaction=True, databases=DATABASES),
    pytest.mark.parametrize("using", DATABASES),
]


def fork(count, target, *args):
    connections.close_all()  # never hand a child this process's connection
    return run_processes(count, target, *args)


def catalogue_of(using, prefix):
    rows = Product.objects.using(using).filter(name__startswith=prefix).order_by("name")
    return [(p.name, str(p.price), sorted(c.name for c in p.categories.all())) for p in rows]


@cache_aside(timeout=300, depends_on=[Product])
def catalogue(using, prefix):
    return catalogue_of(using, prefix)


@cache_aside(timeout=300, depends_on=[Product])
def catalogue_cold(using, prefix):  # the same data: read for the first time mid-transaction
    return catalogue_of(using, prefix)


@cache_aside(
    timeout=300,
    tags=lambda using, pk: [f"product:{using}:{pk}"],
    depends_on={
        Product: lambda product: [f"product:{product._state.db}:{product.pk}"],
        Review: lambda review: [f"product:{review._state.db}:{review.product_id}"],
    },
)
def product_page(using, pk):
    product = Product.objects.using(using).get(pk=pk)
    stars = sorted(r.stars for r in Review.objects.using(using).filter(product=product))
    return (str(product.price), stars)


def setup_products(using, prefix):
    first = Product.objects.using(using).create(name=f"{prefix}-1", price=10)
    second = Product.objects.using(using).create(name=f"{prefix}-2", price=20)
    Category.objects.using(using).create(name=f"{prefix}-books")
    return first, second


def write(kind, using, prefix):
    """One write of ``kind`` to the products named ``prefix-*`` (or their relations)."""
    products = Product.objects.using(using).filter(name__startswith=prefix)
    first = products.get(name=f"{prefix}-1")
    category = Category.objects.using(using).get(name=f"{prefix}-books")
    if kind == "save":
        first.price = Decimal(11)
        first.save()
    elif kind == "create":
        Product.objects.using(using).create(name=f"{prefix}-3", price=30)
    elif kind == "delete":
        first.delete()
    elif kind == "queryset update":
        products.update(price=99)
    elif kind == "queryset delete":
        products.filter(name=f"{prefix}-2").delete()
    elif kind == "bulk_create":
        Product.objects.using(using).bulk_create([Product(name=f"{prefix}-4", price=40)])
    elif kind == "bulk_update":
        first.price = Decimal(12)
        Product.objects.using(using).bulk_update([first], ["price"])
    elif kind == "m2m add":
        first.categories.add(category)
    elif kind == "m2m set":
        first.categories.set([category])
    elif kind == "m2m remove":
        first.categories.remove(category)  # after an add: see below
    elif kind == "m2m clear":
        first.categories.clear()
    elif kind == "m2m reverse add":
        category.products.add(first)
    elif kind == "raw SQL":
        with connections[using].cursor() as cursor:
            cursor.execute(
                "UPDATE shop_product SET price = %s WHERE name = %s", [77, f"{prefix}-2"]
            )
    else:
        raise AssertionError(kind)


WRITES = [
    "save",
    "create",
    "delete",
    "queryset update",
    "queryset delete",
    "bulk_create",
    "bulk_update",
    "m2m add",
    "m2m set",
    "m2m remove",
    "m2m clear",
    "m2m reverse add",
    "raw SQL",
]


def prepare(kind, using, prefix):
    if kind in ("m2m remove", "m2m clear"):  # something to remove
        first = Product.objects.using(using).get(name=f"{prefix}-1")
        first.categories.add(Category.objects.using(using).get(name=f"{prefix}-books"))


def writer_and_reader(index, barrier, kind, using, prefix, written, read):
    barrier.wait()
    if index:  # another process, between the write and the COMMIT
        assert written.wait(10)
        still_cached = catalogue.is_cached(using, prefix)  # not invalidated before COMMIT
        old = catalogue_cold(using, prefix)  # computed from the committed data, and stored
        read.set()
        return still_cached, old
    with transaction.atomic(using=using):
        write(kind, using, prefix)
        written.set()
        assert read.wait(10)
    return None


@pytest.mark.parametrize("kind", WRITES)
def test_each_write_invalidates_after_commit_and_not_before(unique, using, kind):
    setup_products(using, unique)
    prepare(kind, using, unique)
    before = catalogue(using, unique)
    written, read = FORK.Event(), FORK.Event()
    _, (still_cached, seen_meanwhile) = fork(
        2, writer_and_reader, kind, using, unique, written, read
    )
    after = catalogue_of(using, unique)
    assert after != before, "the write changed nothing: the test proves nothing"
    assert still_cached, "invalidated before COMMIT"
    assert seen_meanwhile == before  # the reader saw the committed data, and stored it
    assert catalogue(using, unique) == after  # ... which the COMMIT voided
    assert catalogue_cold(using, unique) == after


def test_a_transaction_reads_its_own_writes_and_shares_none_of_them(unique, using):
    first, second = setup_products(using, unique)
    before = catalogue(using, unique)
    product_page(using, second.pk)
    with transaction.atomic(using=using):
        first.price = Decimal(13)
        first.save()
        assert catalogue(using, unique) != before  # computed, not the entry before the write
        assert product_page(using, second.pk) and product_page.is_cached(using, second.pk)
        assert catalogue.is_cached(using, unique) and catalogue_cold(using, unique)
        assert not catalogue_cold.is_cached(using, unique)  # nothing of it stored
    assert catalogue(using, unique)[0][1] == "13.00"


def test_a_rollback_invalidates_nothing(unique, using):
    setup_products(using, unique)
    before = catalogue(using, unique)
    with pytest.raises(RuntimeError), transaction.atomic(using=using):
        Product.objects.using(using).filter(name__startswith=unique).update(price=1)
        raise RuntimeError("the view failed")
    assert catalogue.is_cached(using, unique) and catalogue(using, unique) == before


def test_a_write_in_a_rolled_back_savepoint_still_invalidates_at_commit(unique, using):
    """Over-invalidating is safe: the savepoint's writes are gone, its invalidations are not."""
    setup_products(using, unique)
    catalogue(using, unique)
    with (
        transaction.atomic(using=using),
        pytest.raises(RuntimeError),
        transaction.atomic(using=using),
    ):
        Product.objects.using(using).filter(name__startswith=unique).update(price=1)
        raise RuntimeError("the savepoint rolls back")
    assert not catalogue.is_cached(using, unique)


def test_autocommit_writes_invalidate_at_once(unique, using):
    setup_products(using, unique)
    catalogue(using, unique)
    Product.objects.using(using).filter(name=f"{unique}-1").update(price=5)
    assert not catalogue.is_cached(using, unique)
    assert catalogue(using, unique)[0][1] == "5.00"


def test_a_write_through_an_instance_voids_only_its_tags(unique, using):
    first, second = setup_products(using, unique)
    pages = [product_page(using, first.pk), product_page(using, second.pk)]
    second.price = Decimal(21)
    second.save()
    assert product_page.is_cached(using, first.pk) and not product_page.is_cached(using, second.pk)
    Review.objects.using(using).create(product=first, stars=5)
    assert not product_page.is_cached(using, first.pk) and product_page(using, first.pk) == (
        pages[0][0],
        [5],
    )
    product_page(using, second.pk)
    # Without instances (and so without their tags): the whole function.
    Review.objects.using(using).filter(product=second).update(stars=1)
    assert not product_page.is_cached(using, first.pk)
    assert not product_page.is_cached(using, second.pk)


def test_a_cascade_invalidates_what_it_deletes(unique, using):
    first, _ = setup_products(using, unique)
    Review.objects.using(using).create(product=first, stars=4)
    product_page(using, first.pk)
    catalogue(using, unique)
    Product.objects.using(using).filter(pk=first.pk).delete()  # reviews go with it
    assert not product_page.is_cached(using, first.pk) and not catalogue.is_cached(using, unique)


def test_invalidate_model_covers_writes_cache_tools_cannot_see(unique, using):
    setup_products(using, unique)
    first = Product.objects.using(using).get(name=f"{unique}-1")
    catalogue(using, unique)
    product_page(using, first.pk)
    invalidate_model(Product)
    assert not catalogue.is_cached(using, unique)
    assert not product_page.is_cached(using, first.pk)


def test_model_tags_name_the_table_they_follow(using):
    assert model_tag(Product) == "model:shop.product"
    with pytest.raises(TypeError, match="not a Django model"):
        cache_aside(depends_on=[object])(lambda: None)
    with pytest.raises(TypeError, match="callable instance -> tags"):
        cache_aside(depends_on={Product: "product"})(lambda: None)


@cache_aside(timeout=300, depends_on=[Product], local=True)
def local_catalogue(using, prefix):
    return catalogue_of(using, prefix)


def copy_holder(index, barrier, using, prefix, holding, written_at, seen_after):
    """Keeps a copy, then reads it in a loop until the write shows (index 1 writes)."""
    barrier.wait()
    if index:
        assert holding.wait(10)
        Product.objects.using(using).filter(name=f"{prefix}-1").update(price=3)
        written_at.value = time.monotonic()
        return None
    before = local_catalogue(using, prefix)
    assert local_catalogue(using, prefix) == before  # served from the copy
    holding.set()
    deadline = time.monotonic() + 5
    while local_catalogue(using, prefix) == before:
        assert time.monotonic() < deadline, "the copy outlived the write"
    seen_after.value = time.monotonic()
    return None


def test_local_copies_in_other_processes_follow_model_writes(unique, using):
    setup_products(using, unique)
    holding = FORK.Event()
    written_at, seen_after = FORK.Value("d", 0.0), FORK.Value("d", 0.0)
    fork(2, copy_holder, using, unique, holding, written_at, seen_after)
    assert seen_after.value - written_at.value < 0.1


def test_a_view_depending_on_a_model_follows_its_writes(unique, using):
    from django.http import HttpResponse
    from django.test import RequestFactory

    from cache_tools import cache_view

    @cache_view(timeout=60, depends_on=[Product])
    def prices(request):
        names = Product.objects.using(using).filter(name__startswith=unique)
        return HttpResponse(",".join(f"{p.name}={p.price}" for p in names.order_by("name")))

    request = RequestFactory().get(f"/prices/{unique}/{using}")
    Product.objects.using(using).create(name=f"{unique}-a", price=1)
    first = prices(request)
    assert first["X-Cache"] == "miss" and prices(request)["X-Cache"] == "hit"
    with transaction.atomic(using=using):
        Product.objects.using(using).filter(name=f"{unique}-a").update(price=2)
        assert prices(request).content.decode() == f"{unique}-a=2.00"  # its own write
        others = []  # another thread (another request): the committed page, from the cache
        reader = threading.Thread(target=lambda: others.append(prices(request)))
        reader.start()
        reader.join()
        assert others[0]["X-Cache"] == "hit" and others[0].content.decode() == f"{unique}-a=1.00"
    again = prices(request)
    assert again["X-Cache"] == "miss" and again.content.decode() == f"{unique}-a=2.00"


def test_an_unreachable_cache_never_fails_the_write_it_follows(unique, using, dead_alias, caplog):
    """The row is written (autocommit, or COMMIT): the invalidation that cannot be made is
    logged, not raised into ``save()`` or ``update()``."""

    @cache_aside(timeout=60, cache=dead_alias, depends_on=[Category])
    def categories():
        return []

    category = Category.objects.using(using).create(name=unique)  # a signal
    Category.objects.using(using).filter(pk=category.pk).update(name=f"{unique}-2")  # a statement
    with transaction.atomic(using=using):
        Category.objects.using(using).filter(pk=category.pk).update(name=f"{unique}-3")
    assert Category.objects.using(using).get(pk=category.pk).name == f"{unique}-3"
    assert caplog.text.count("could not invalidate") >= 3
    del categories


def bulk_write_without_instance_tags(index, barrier, using, pk):
    """A process that imported only list-form dependents of Product (a command, a worker)."""
    from cache_tools import dependencies

    barrier.wait()
    dependents = dependencies._registry.dependents[Product]
    for dependency in list(dependents):
        if dependency.per_model[Product] is not None:
            dependents.discard(dependency)
    Product.objects.using(using).filter(pk=pk).update(price=3)


def test_a_bulk_write_voids_instance_tagged_entries_it_does_not_know_of(unique, using):
    first, _ = setup_products(using, unique)
    catalogue(using, unique)  # a list-form dependent, known to the writer too
    product_page(using, first.pk)
    fork(1, bulk_write_without_instance_tags, using, first.pk)
    assert product_page(using, first.pk)[0] == "3.00"


def test_a_thread_keeps_nothing_of_the_transactions_it_ended(unique, using):
    from cache_tools import transactions

    for n in range(20):
        with transaction.atomic(using=using):
            Product.objects.using(using).create(name=f"{unique}-{n}", price=1)
    assert len(transactions._collecting.batches) <= 1  # before: one per transaction, for ever
