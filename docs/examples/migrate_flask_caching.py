"""From Flask-Caching's memoize / delete_memoized (on a Flask app) to cache_aside on Django."""

from flask import Flask
from flask_caching import Cache

from cache_tools import cache_aside

calls = []

# Before (Flask): memoize, delete_memoized(function, *args).
app = Flask("shop", root_path=".")
flask_cache = Cache(app, config={"CACHE_TYPE": "SimpleCache"})  # per process, as lru_cache


@flask_cache.memoize(timeout=300)
def stock_before(product_id):
    calls.append(("before", product_id))
    return 5


with app.app_context():
    stock_before(3), stock_before(3)
    flask_cache.delete_memoized(stock_before, 3)
    stock_before(3)
assert calls.count(("before", 3)) == 2


# After: the function carries its controls; the entry is shared by every process.
@cache_aside(timeout=300)
def stock_after(product_id):
    calls.append(("after", product_id))
    return 5


stock_after(3), stock_after(3)
stock_after.invalidate(3)  # delete_memoized(stock_before, 3)
stock_after(3)
stock_after.invalidate_all()  # delete_memoized(stock_before): every argument, in O(1)
assert calls.count(("after", 3)) == 2
