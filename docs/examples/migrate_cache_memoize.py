"""From django-cache-memoize: @cache_memoize(timeout) -> @cache_aside(timeout=...), and
f.invalidate(*args) as before; what changes is that a cold key is computed once (the others
wait), None is a value, and an invalidation during a computation voids its store."""

from cache_memoize import cache_memoize

from cache_tools import cache_aside

calls = []


# Before
@cache_memoize(300)
def profile_before(user_id):
    calls.append(("before", user_id))
    return {"id": user_id}


profile_before(7), profile_before(7)
profile_before.invalidate(7)
profile_before(7)
assert calls.count(("before", 7)) == 2


# After: the same calls.
@cache_aside(timeout=300)
def profile_after(user_id):
    calls.append(("after", user_id))
    return {"id": user_id}


profile_after(7), profile_after(7)
profile_after.invalidate(7)
profile_after(7)
assert calls.count(("after", 7)) == 2


# None is cached too (cache_memoize stores it, but cache.get cannot tell it from a miss):
@cache_aside(timeout=300)
def nickname(user_id):
    calls.append(("nickname", user_id))
    return None


nickname(7), nickname(7)
assert calls.count(("nickname", 7)) == 1

# cache_memoize's args_rewrite=... is key_maker=..., prefix=... is version=...,
# cache_alias=... is cache=..., and hit_callable/miss_callable are the cache_hit and
# cache_miss signals (cache_tools.signals).
