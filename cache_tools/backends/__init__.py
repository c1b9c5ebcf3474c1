"""Pick the adapter for a cache alias.

``get_backend(alias)`` returns the :class:`~cache_tools.backends.base.Backend` for the alias's
cache class. The class hierarchy is walked, so a subclass of a supported cache (``class
MyRedis(django_redis.cache.RedisCache)``) gets its parent's adapter; ``CACHE_TOOLS["ADAPTERS"]``
(``{"dotted.CacheClass": "dotted.Adapter"}``) adds or overrides entries and is looked up first.
"""

from __future__ import annotations

import functools
import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .. import conf
from .base import Backend

__all__ = ["Backend", "adapter_class", "get_backend", "is_current", "prepare_all", "resolve_alias"]

logger = logging.getLogger("cache_tools.backends")

_LOCAL = "cache_tools.backends.local"
_REDIS = "cache_tools.backends.redis"
_VALKEY = "cache_tools.backends.valkey"
#: Cache class (dotted path) -> adapter class (dotted path), for the caches shipped with Django,
#: django-redis and cache_tools.
BUILTIN_ADAPTERS = {
    "django_redis.cache.RedisCache": f"{_REDIS}.DjangoRedisBackend",
    "django.core.cache.backends.redis.RedisCache": f"{_REDIS}.BuiltinRedisBackend",
    "django.core.cache.backends.memcached.PyMemcacheCache": (
        "cache_tools.backends.memcached.MemcachedBackend"
    ),
    "django.core.cache.backends.memcached.PyLibMCCache": (
        "cache_tools.backends.memcached.MemcachedBackend"
    ),
    "cache_tools.backends.uwsgi.UWSGICache": "cache_tools.backends.uwsgi.UWSGIBackend",
    "django_valkey.cache.ValkeyCache": f"{_VALKEY}.ValkeyBackend",
    "django_valkey.cluster_cache.cache.ClusterValkeyCache": f"{_VALKEY}.ClusterValkeyBackend",
    "django_valkey.async_cache.cache.AsyncValkeyCache": f"{_VALKEY}.AsyncValkeyBackend",
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


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def adapter_class(alias: str) -> type[Backend]:
    """The adapter class for ``alias``'s cache class, found along its class hierarchy."""
    backend_path = settings.CACHES[alias].get("BACKEND", "")
    try:
        cache_class = import_string(backend_path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"cache alias {alias!r}: cannot import its BACKEND {backend_path!r}: {exc}"
        ) from exc
    adapters = {**BUILTIN_ADAPTERS, **conf.get("ADAPTERS")}
    for cls in getattr(cache_class, "__mro__", ()):
        adapter_path = adapters.get(_dotted(cls)) or adapters.get(
            f"{cls.__module__}.{cls.__name__}"
        )
        if adapter_path is not None:
            adapter = import_string(adapter_path)
            if not (isinstance(adapter, type) and issubclass(adapter, Backend)):
                raise ImproperlyConfigured(
                    f"{adapter_path} (the adapter for {_dotted(cls)}) is not a subclass of "
                    "cache_tools.backends.base.Backend"
                )
            return adapter
    raise ImproperlyConfigured(
        f"cache alias {alias!r} uses {backend_path!r}, which cache_tools has no adapter for. "
        f'Name one in CACHE_TOOLS["ADAPTERS"] = {{"{backend_path}": "path.to.Adapter"}} '
        "(see the Architecture page of the docs), or use one of: "
        f"{', '.join(sorted(BUILTIN_ADAPTERS))} or a subclass of one"
    )


@functools.cache
def _backend_for(alias: str) -> Backend:
    return adapter_class(alias)(alias)


# get_backend(alias) by the alias as given (None included), so that a call on the hit path is
# one dictionary lookup; emptied with the adapters when settings change.
_by_name: dict[str | None, Backend] = {}


def get_backend(alias: str | None = None) -> Backend:
    """The adapter of ``alias`` (default: ``CACHE_TOOLS["CACHE"]``), made once per settings."""
    backend = _by_name.get(alias)
    if backend is None:
        conf.warn_if_not_installed()
        backend = _by_name[alias] = _backend_for(resolve_alias(alias))
    return backend


def prepare_all() -> None:
    """:meth:`Backend.prepare` every alias in ``CACHES``, in the calling thread (start-up). An
    alias that cannot be set up is left to fail where it is used, as it would without this."""
    for alias in settings.CACHES:
        try:
            get_backend(alias).prepare()
        except Exception as exc:  # any error is the first use's to report, as before
            logger.debug("could not prepare cache alias %r at start-up: %s", alias, exc)


def is_current(backend: Backend) -> bool:
    """False once a settings change has replaced ``backend`` (or removed its alias): whoever
    still holds it must not start anything that lives longer than the call."""
    try:
        return _backend_for(backend.alias) is backend
    except (ImproperlyConfigured, KeyError):
        return False


def _forget_adapters(*, setting: str, **kwargs: object) -> None:
    if setting in ("CACHES", "CACHE_TOOLS"):
        _by_name.clear()
        _backend_for.cache_clear()


setting_changed.connect(_forget_adapters)
