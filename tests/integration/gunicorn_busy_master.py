"""gunicorn settings for the integration tests: a master that uses the cache while it forks.

With ``--preload`` the master loads the application, then forks every worker: the first ones
and each one it respawns. Here the master, once ready, keeps a thread calling a cached
function, taking a lock and writing a key for as long as it runs, so that forks happen while
one of its threads is inside a cache call (holding, for an instant, the locks a child would
otherwise inherit held). The thread writes its iteration to ``gunicorn-master-beat``, so a
test can see that it kept running.

The thread starts just before the first workers are forked, so its first cache call races
their fork. That call imports nothing: cache_tools imported at start-up what it needs
(``Backend.prepare``). Before it did, a worker forked in the middle of that import inherited a
half-imported ``django_redis.cache`` for good, and every request it took failed with
"partially initialized module" (5 starts out of 5).
"""

import itertools
import threading
import time


def when_ready(server):
    """Runs in the master after the application is loaded and before any worker is forked."""
    from django.core.cache import cache

    from cache_tools import cache_aside, lock

    @cache_aside(timeout=3600, key_maker="gunicorn-master:{n}")  # no recomputation mid-test
    def in_master(n):
        return n

    def use_the_cache(beat):
        in_master(beat % 50)
        with lock("gunicorn-master", timeout=5):
            cache.set("gunicorn-master-beat", beat, 60)

    def busy():
        for beat in itertools.count(1):
            use_the_cache(beat)
            time.sleep(0.001)  # pacing: inside a call about half the time, not a whole core

    threading.Thread(target=busy, name="busy-master", daemon=True).start()
