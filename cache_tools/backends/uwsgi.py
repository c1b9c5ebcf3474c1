"""uWSGI's shared cache: a Django cache backend, and its cache_tools adapter.

All workers of one uWSGI instance share a ``cache2`` without any other server::

    ; uwsgi.ini
    cache2 = name=default,items=2000,blocksize=4096,keysize=256,bitmap=1

    # settings.py
    CACHES = {"default": {"BACKEND": "cache_tools.backends.uwsgi.UWSGICache",
                          "LOCATION": "default"}}        # the cache2 name

Values are pickled like Django's other backends, with their expiry beside them (checked on
read, so an item is gone on time even before uWSGI's sweeper removes it). Writes that must be
atomic across workers (``add``, ``incr``, conditional deletes) run under uWSGI's shared lock.
Outside uWSGI the backend raises ``ImproperlyConfigured``: silently falling back to a
per-process dict is the very pitfall cache_tools exists to prevent.

Keys longer than the cache's ``keysize`` (read from the ``cache2`` option, or
``OPTIONS={"KEYSIZE": n}``) are shortened with a digest, so every key Django accepts works. A
write the cache cannot hold (full, or a value over ``blocksize`` without ``bitmap=1``) raises
:class:`~cache_tools.errors.StoreRefused` naming the limits.
"""

from __future__ import annotations

import contextlib
import pickle
import time
import warnings
from collections.abc import Iterator
from typing import Any

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
    CacheKeyWarning,
    memcache_key_warnings,
)
from django.core.exceptions import ImproperlyConfigured

from ..errors import StoreRefused
from ..keys import fit_length
from .base import ServerKey
from .generic import CacheAPIBackend

__all__ = ["UWSGIBackend", "UWSGICache"]

_MAX_EXPIRY = 10 * 365 * 86400
_DEFAULT_KEYSIZE = 2048  # uWSGI's own default for cache2


def _cache2_options(uwsgi: Any, name: str) -> dict[str, str]:
    """The ``cache2`` option of the cache called ``name``, as a dict (empty if not found)."""
    declared = uwsgi.opt.get("cache2") or []
    for option in declared if isinstance(declared, list) else [declared]:
        text = option.decode() if isinstance(option, bytes) else str(option)
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if fields.get("name") == name:
            return fields
    return {}


def _uwsgi_module() -> Any:
    try:
        import uwsgi
    except ImportError:
        raise ImproperlyConfigured(
            "UWSGICache works only inside uWSGI (the `uwsgi` module is missing here); run under "
            "uwsgi, or use a cache shared by all processes such as django-redis"
        ) from None
    return uwsgi


class UWSGICache(BaseCache):
    """A Django cache backend over a named uWSGI ``cache2`` (``LOCATION`` is its name)."""

    pickle_protocol = pickle.HIGHEST_PROTOCOL

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._uwsgi = _uwsgi_module()
        self._name = server or "default"
        self._limits = _cache2_options(self._uwsgi, self._name)
        options = params.get("OPTIONS") or {}
        self.keysize = int(
            options.get("KEYSIZE") or self._limits.get("keysize") or _DEFAULT_KEYSIZE
        )

    def make_key(self, key: str, version: Any = None) -> str:
        return fit_length(super().make_key(key, version), self.keysize)

    def validate_key(self, key: str) -> None:
        """Warn (``CacheKeyWarning``) about spaces and control characters, as every Django
        cache but memcached does; no length warning: :meth:`make_key` shortens long keys."""
        for warning in memcache_key_warnings(key):
            if "characters" in warning:
                warnings.warn(warning, CacheKeyWarning, stacklevel=3)

    # Raw access: key already made, value an (expires_at, value) pair ---------------------

    def _read(self, key: str) -> tuple[bool, Any]:
        raw = self._uwsgi.cache_get(key, self._name)
        if raw is None:
            return False, None
        expires_at, value = pickle.loads(raw)
        if expires_at and expires_at <= time.time():
            return False, None
        return True, value

    def _write(self, key: str, value: Any, timeout: Any) -> None:
        seconds = self.get_backend_timeout(timeout)
        expires_at = 0 if seconds is None else seconds
        expiry = 0 if seconds is None else max(1, min(int(seconds - time.time()) + 1, _MAX_EXPIRY))
        data = pickle.dumps((expires_at, value), self.pickle_protocol)
        if not self._uwsgi.cache_update(key, data, expiry, self._name):
            limits = ", ".join(f"{k}={v}" for k, v in self._limits.items() if k != "name")
            raise StoreRefused(
                f"uWSGI cache {self._name!r} refused a {len(data)}-byte value for {key!r}: it "
                f"is full or the value is over its limits ({limits or 'see its cache2 option'})"
            )

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        if timeout == DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        return time.time() + max(float(timeout), 0.0)

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """uWSGI's lock 0, shared by every worker of the instance."""
        self._uwsgi.lock()
        try:
            yield
        finally:
            self._uwsgi.unlock()

    # The Django cache API ----------------------------------------------------------------

    def get(self, key: str, default: Any = None, version: Any = None) -> Any:
        found, value = self._read(self.make_and_validate_key(key, version=version))
        return value if found else default

    def set(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        key = self.make_and_validate_key(key, version=version)
        with self._atomic():
            self._write(key, value, timeout)

    def add(
        self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        key = self.make_and_validate_key(key, version=version)
        with self._atomic():
            if self._read(key)[0]:
                return False
            self._write(key, value, timeout)
            return True

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        with self._atomic():
            found, value = self._read(key)
            if found:
                self._write(key, value, timeout)
            return found

    def delete(self, key: str, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        with self._atomic():
            return bool(self._uwsgi.cache_del(key, self._name))

    def incr(self, key: str, delta: int = 1, version: Any = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        with self._atomic():
            raw = self._uwsgi.cache_get(key, self._name)
            if raw is None:
                raise ValueError(f"Key '{key}' not found")
            expires_at, value = pickle.loads(raw)
            if expires_at and expires_at <= time.time():
                raise ValueError(f"Key '{key}' not found")
            new: int = value + delta
            self._write(key, new, None if not expires_at else expires_at - time.time())
            return new

    def has_key(self, key: str, version: Any = None) -> bool:
        return self._read(self.make_and_validate_key(key, version=version))[0]

    def clear(self) -> None:
        self._uwsgi.cache_clear(self._name)

    # Conditional writes for locks ----------------------------------------------------------

    def delete_if(self, key: str, expected: Any) -> bool:
        """Delete ``key`` (already made) only while it holds ``expected``, atomically."""
        with self._atomic():
            found, value = self._read(key)
            if not found or value != expected:
                return False
            return bool(self._uwsgi.cache_del(key, self._name))

    def replace_if(self, key: str, expected: Any, timeout: float) -> bool:
        """Give ``key`` (already made) a new timeout only while it holds ``expected``."""
        with self._atomic():
            found, value = self._read(key)
            if not found or value != expected:
                return False
            self._write(key, value, timeout)
            return True


class UWSGIBackend(CacheAPIBackend):
    """cache_tools on :class:`UWSGICache`: locks on its atomic ``add``, released and extended
    only by their owner. ``clear_cache`` must run inside uWSGI (``manage.py`` is outside it)."""

    def _uwsgi_cache(self) -> UWSGICache:
        cache = self.cache
        assert isinstance(cache, UWSGICache)
        return cache

    def _delete_if(self, key: ServerKey, expected: str) -> bool:
        return self._uwsgi_cache().delete_if(key, expected)

    def _replace_if(self, key: ServerKey, expected: str, ttl: float) -> bool:
        return self._uwsgi_cache().replace_if(key, expected, ttl)
