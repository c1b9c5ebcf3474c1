"""memcached (``PyMemcacheCache``, ``PyLibMCCache``): locks on atomic ``add``, released and
extended with check-and-set (``gets``/``cas``), so a release never deletes another owner's lock.

memcached cannot list its keys: ``clear_cache`` bumps the alias's namespace generation instead,
which makes every entry written through cache_tools unreachable at once. Its TTLs are whole
seconds: a lock's TTL is rounded up. Keys longer than memcached's 250 bytes are shortened with
a digest; values over its item size (1 MB by default, ``-I``) are refused, not an outage.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

from django.core.cache import BaseCache, caches

from .base import ServerKey
from .generic import CacheAPIBackend

__all__ = ["MemcachedBackend"]


def _client_errors() -> tuple[type[BaseException], ...]:
    try:
        from pymemcache.exceptions import MemcacheError
    except ImportError:
        return ()
    return (MemcacheError,)


class MemcachedBackend(CacheAPIBackend):
    clear_is_global = True
    max_key_length: ClassVar[int | None] = 250

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._errors = (*self.outage_errors, *_client_errors())

    def _outage_errors(self) -> tuple[type[BaseException], ...]:
        return self._errors

    def _refusal(self, exc: BaseException) -> str | None:
        # pymemcache raises MemcacheServerError for "SERVER_ERROR object too large for cache"
        # and "SERVER_ERROR out of memory storing object": the server answered, and said no.
        if type(exc).__name__ == "MemcacheServerError":
            message = exc.args[0] if exc.args else exc
            text = message.decode(errors="replace") if isinstance(message, bytes) else message
            return f"{text} (memcached's item size is set with -I, 1 MB by default)"
        return None

    @property
    def cache(self) -> BaseCache:
        # memcached clients do not notice a fork: a child reusing its parent's sockets would
        # read replies meant for the parent. Disconnect once per process; it reconnects on use.
        cache = caches[self.alias]
        if getattr(cache, "_cache_tools_pid", None) != os.getpid():
            cache.close()
            cache._cache_tools_pid = os.getpid()  # type: ignore[attr-defined]
        return cache

    def _client(self) -> Any:
        return self.cache._cache  # type: ignore[attr-defined]

    def _delete_if(self, key: ServerKey, expected: str) -> bool:
        value, cas_token = self._client().gets(key)
        if value != expected or cas_token is None:
            return False
        # An item stored with a negative expiry is gone at once, for get and for add alike;
        # cas makes the replacement conditional on nobody having written the key since gets.
        return bool(self._client().cas(key, expected, cas_token, expire=-1))

    def _replace_if(self, key: ServerKey, expected: str, ttl: float) -> bool:
        value, cas_token = self._client().gets(key)
        if value != expected or cas_token is None:
            return False
        return bool(self._client().cas(key, expected, cas_token, expire=math.ceil(ttl)))
