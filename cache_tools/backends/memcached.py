"""memcached (``PyMemcacheCache``, ``PyLibMCCache``): locks on atomic ``add``, released and
extended with check-and-set (``gets``/``cas``), so a release never deletes another owner's lock.

memcached cannot list its keys: ``clear_cache`` bumps the alias's namespace generation instead,
which makes every entry written through cache_tools unreachable at once. Its TTLs are whole
seconds: a lock's TTL is rounded up.
"""

from __future__ import annotations

import math
import os

from django.core.cache import BaseCache, caches

from .generic import CacheAPIBackend


class MemcachedBackend(CacheAPIBackend):
    outage_errors = (OSError, ConnectionError, TimeoutError)

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        try:
            from pymemcache.exceptions import MemcacheError
        except ImportError:
            return
        self.outage_errors = (*self.outage_errors, MemcacheError)

    @property
    def cache(self) -> BaseCache:
        # memcached clients do not notice a fork: a child reusing its parent's sockets would
        # read replies meant for the parent. Disconnect once per process; it reconnects on use.
        cache = caches[self.alias]
        if getattr(cache, "_cache_tools_pid", None) != os.getpid():
            cache.close()
            cache._cache_tools_pid = os.getpid()
        return cache

    def _client(self):
        return self.cache._cache

    def _delete_if(self, key: str, expected: str) -> bool:
        full = self.full_key(key)
        value, cas_token = self._client().gets(full)
        if value != expected or cas_token is None:
            return False
        # An item stored with a negative expiry is gone at once, for get and for add alike;
        # cas makes the replacement conditional on nobody having written the key since gets.
        return bool(self._client().cas(full, expected, cas_token, expire=-1))

    def _replace_if(self, key: str, expected: str, ttl: float) -> bool:
        full = self.full_key(key)
        value, cas_token = self._client().gets(full)
        if value != expected or cas_token is None:
            return False
        return bool(self._client().cas(full, expected, cas_token, expire=math.ceil(ttl)))
