"""A product page, its price and its reviews: entries invalidated by the writes that change
them, whichever process makes them, when the transaction commits."""

from decimal import Decimal

from django.db import transaction

from cache_tools import cache_aside, invalidate_model, invalidate_tags
from testproject.shop.models import Product, Review


def product_tags(product_id):
    return [f"product:{product_id}"]


# The page depends on one product and its reviews: a write through an instance invalidates
# that product's entries only; a write without instances (QuerySet.update(), bulk_update()
# ...) invalidates every entry of the function.
@cache_aside(
    timeout=600,
    tags=product_tags,
    depends_on={
        Product: lambda product: product_tags(product.pk),
        Review: lambda review: product_tags(review.product_id),
    },
)
def product_page(product_id):
    product = Product.objects.get(pk=product_id)
    stars = [review.stars for review in Review.objects.filter(product=product)]
    return {"name": product.name, "price": product.price, "reviews": len(stars)}


# The price list reads every product: any committed write to the table invalidates it.
@cache_aside(timeout=600, depends_on=[Product])
def price_list():
    return {p.name: p.price for p in Product.objects.order_by("name")}


lamp = Product.objects.create(name="Desk lamp", price=Decimal("39.00"))
chair = Product.objects.create(name="Chair", price=Decimal("89.00"))
assert product_page(lamp.pk)["price"] == Decimal("39.00")
assert product_page(chair.pk)["reviews"] == 0
assert price_list()["Desk lamp"] == Decimal("39.00")

# A price change, in a transaction: invalidated when it commits, not before (until then the
# other processes still see, and serve, the committed price). The transaction itself reads
# its own write: its calls of what rests on it compute, and store nothing.
with transaction.atomic():
    lamp.price = Decimal("35.00")
    lamp.save()
    assert product_page(lamp.pk)["price"] == Decimal("35.00")
    assert product_page.is_cached(lamp.pk)  # the entry others are served, until the COMMIT
assert not product_page.is_cached(lamp.pk)
assert product_page.is_cached(chair.pk)  # another product's page stays
assert product_page(lamp.pk)["price"] == Decimal("35.00")
assert price_list()["Desk lamp"] == Decimal("35.00")

# A review voids its product's page.
Review.objects.create(product=chair, stars=5)
assert product_page(chair.pk)["reviews"] == 1

# Writes that send no signal are seen too: QuerySet.update(), bulk_create/bulk_update, m2m
# changes, raw SQL on Django's cursor.
Product.objects.filter(pk=chair.pk).update(price=Decimal("79.00"))
assert price_list()["Chair"] == Decimal("79.00")
assert product_page(chair.pk)["price"] == Decimal("79.00")

# What cache_tools cannot see (another program's writes, SQL it cannot attribute): say so.
invalidate_model(Product)  # as a write without instances to the table
invalidate_tags("product:7")  # or exactly the entries that changed
