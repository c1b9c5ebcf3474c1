"""Quick start: cache a function, serialise a function, guard a block."""

from cache_tools import cache_aside, lock, lock_decorator

LOADS = []


@cache_aside(timeout=300)
def get_profile(user_id):
    LOADS.append(user_id)  # stands for a database query
    return {"id": user_id, "name": f"user {user_id}"}


assert get_profile(7) == {"id": 7, "name": "user 7"}
assert get_profile(7) == {"id": 7, "name": "user 7"}  # a hit, in every worker process
assert LOADS == [7]
get_profile.invalidate(7)


@lock_decorator(timeout=30)
def rebuild_search_index(section):
    return f"rebuilt {section}"  # never runs twice at once for the same section


assert rebuild_search_index("books") == "rebuilt books"

with lock("reports:monthly", timeout=30, blocking_timeout=5) as handle:
    assert handle.fence > 0  # strictly increasing per lock name
