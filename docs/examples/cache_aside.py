"""cache_aside options: stale-while-revalidate, invalidation, statistics, warm-up; update()."""

from django.core.cache import cache

from cache_tools import CacheInfo, Call, cache_aside, update
from cache_tools.aside import cached_functions

QUERIES = []


@cache_aside(timeout=60, stale=30, warm=lambda: [Call(1), Call(2)])
def get_price(product_id):
    QUERIES.append(product_id)
    return None if product_id == 0 else 10 * product_id


get_price.cache_clear_stats()
assert get_price(0) is None and get_price(0) is None  # None is a value, cached once
assert get_price(3) == 30 and get_price(3) == 30
assert QUERIES == [0, 3]
assert get_price.cache_info() == CacheInfo(hits=2, misses=2, stale_hits=0, computations=2, errors=0)

assert get_price.invalidate(3) is True  # after a write to the product
assert get_price(3) == 30 and QUERIES == [0, 3, 3]
assert get_price.refresh(3) == 30  # recompute now, whatever is cached
get_price.invalidate_all()  # O(1): every entry of get_price is gone
assert get_price.cache_key(3).endswith("get_price}:(product_id=i3)")  # prefix:1:ct:v:{...}
assert get_price(4) == 40
assert get_price.invalidate("4") is False  # "4" is not 4: another key, nothing dropped
assert get_price.cache_key("4") != get_price.cache_key(4)
assert get_price.invalidate(4) is True  # the arguments as the function was called


@cache_aside(timeout=lambda rates: 5 if rates["volatile"] else 3600)
def exchange_rates(currency):
    return {"currency": currency, "volatile": currency == "BTC"}


assert exchange_rates("EUR")["volatile"] is False

assert not get_price.is_cached(5)  # a read that counts nothing
assert get_price.warm_call(Call(5)) == "computed"  # what warm_cache does per argument set
assert get_price.is_cached(5)
assert get_price in cached_functions()  # every cache_aside function of the process

# update(): read-modify-write of one key without lost updates, read back with cache.get.
assert update("docs:counter", lambda old: (old or 0) + 1, timeout=60) == 1
assert update("docs:counter", lambda old: (old or 0) + 1, timeout=60) == 2
assert cache.get("docs:counter") == 2
cache.delete("docs:counter")
