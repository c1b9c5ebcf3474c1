"""From django-redis's cache.lock (redis-py's Lock) to cache_tools's lock and lock_decorator."""

import threading

from django.core.cache import cache

from cache_tools import lock, lock_decorator

done = []

# Before: redis-py's Lock through django-redis. Waiters poll (sleep=0.1), a release by a
# holder whose lock expired raises LockNotOwnedError, and nothing renews a long holder.
with cache.lock("migrate:import", timeout=30, blocking_timeout=5):
    done.append("before")

# After: the same block; waiters are woken at the release, first come first served, the
# watchdog renews the lock while the holder lives, and handle.fence orders the holders.
with lock("migrate:import", timeout=30, blocking_timeout=5) as handle:
    done.append(("after", handle.fence > 0))


# The seed's decorator: a function that must not run twice at once, for each argument.
@lock_decorator(key_maker=lambda name: f"fetch:{name}", timeout=30)
def fetch_remote_thing(name):
    done.append(("fetch", name))


threads = [threading.Thread(target=fetch_remote_thing, args=("a",)) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert done[:2] == ["before", ("after", True)] and done.count(("fetch", "a")) == 3
