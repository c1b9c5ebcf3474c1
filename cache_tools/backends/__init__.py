"""Pick the capability adapter for a cache alias.

``get_backend(alias)`` returns the :class:`~cache_tools.backends.base.Backend` for the alias's
cache class, or raises ``ImproperlyConfigured`` naming the alias and its backend.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .. import conf
from .base import Backend

_LOCAL = "cache_tools.backends.local"
_ADAPTERS = {
    "django_redis.cache.RedisCache": "cache_tools.backends.redis.RedisBackend",
    "django.core.cache.backends.redis.RedisCache": "cache_tools.backends.redis.RedisBackend",
    "django.core.cache.backends.memcached.PyMemcacheCache": (
        "cache_tools.backends.memcached.MemcachedBackend"
    ),
    "django.core.cache.backends.memcached.PyLibMCCache": (
        "cache_tools.backends.memcached.MemcachedBackend"
    ),
    "cache_tools.backends.uwsgi.UWSGICache": "cache_tools.backends.uwsgi.UWSGIBackend",
    "django.core.cache.backends.locmem.LocMemCache": f"{_LOCAL}.LocalMemoryBackend",
    "django.core.cache.backends.filebased.FileBasedCache": f"{_LOCAL}.FileOrDatabaseBackend",
    "django.core.cache.backends.db.DatabaseCache": f"{_LOCAL}.FileOrDatabaseBackend",
    "django.core.cache.backends.dummy.DummyCache": f"{_LOCAL}.DummyBackend",
}


def resolve_alias(alias: str | None) -> str:
    """``alias``, or ``CACHE_TOOLS["CACHE"]`` when it is None; unknown aliases are an error."""
    name = alias or conf.default_alias()
    if name not in settings.CACHES:
        raise ImproperlyConfigured(
            f"cache alias {name!r} is not in CACHES (known: {sorted(settings.CACHES)})"
        )
    return name


@functools.cache
def _backend_for(alias: str) -> Backend:
    backend_path = settings.CACHES[alias].get("BACKEND", "")
    adapter_path = _ADAPTERS.get(backend_path)
    if adapter_path is None:
        raise ImproperlyConfigured(
            f"cache alias {alias!r} uses {backend_path!r}, which cache_tools does not support; "
            f"supported backends: {sorted(_ADAPTERS)}"
        )
    return import_string(adapter_path)(alias)


def get_backend(alias: str | None = None) -> Backend:
    return _backend_for(resolve_alias(alias))


def _forget_adapters(*, setting: str, **kwargs: object) -> None:
    if setting in ("CACHES", "CACHE_TOOLS"):
        _backend_for.cache_clear()


setting_changed.connect(_forget_adapters)
