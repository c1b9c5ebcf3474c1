"""From django-cacheops' cached_as: a function cached until its querysets' tables change ->
cache_aside(depends_on=[...]), which also sees writes without signals (QuerySet.update(),
bulk_update, raw SQL on Django's cursor) and invalidates at COMMIT."""

from decimal import Decimal

from cache_tools import cache_aside
from testproject.shop.models import Product

# Before (django-cacheops):
#
#     @cached_as(Product.objects.filter(stock__gt=0), timeout=600)
#     def in_stock():
#         return list(Product.objects.filter(stock__gt=0).values_list("name", flat=True))
#
# After:


@cache_aside(timeout=600, depends_on=[Product])
def in_stock():
    return sorted(Product.objects.filter(stock__gt=0).values_list("name", flat=True))


Product.objects.create(name="Kettle", price=Decimal("25.00"), stock=3)
assert in_stock() == ["Kettle"]
Product.objects.filter(name="Kettle").update(stock=0)  # no signal: still seen
assert in_stock() == []

# cacheops invalidates by the rows a queryset's conditions match; cache_tools by the table
# (depends_on=[Model]) or by the tags you give an instance
# (depends_on={Product: lambda product: [f"product:{product.pk}"]}): see Invalidation.
