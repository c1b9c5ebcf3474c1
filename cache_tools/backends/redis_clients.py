"""Where the Redis adapter's clients and codec come from: the value codec of a django-redis
or django-valkey client, an asyncio client made from a sync client's settings, and the pools'
locks held across fork.

>>> codec = client_codec(cache.client)     # django-redis: its serializer and compressor
>>> async_client(client, "redis.asyncio", "Redis")
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import weakref
from collections.abc import Callable
from typing import Any

from .._process import hold_across_fork
from ..errors import UnserializableValue

__all__ = ["Codec", "async_client", "builtin_codec", "client_codec", "remember_pool"]

# The pools the adapters' clients send on, shared by every thread of the process. redis-py 8's
# ``ConnectionPool.reset()``, which a forked child runs at its first command, takes the lock
# the child inherited: held at the fork by another thread (the statistics flusher releasing a
# connection, say), it is never released there. Their locks are held through each fork.
_pools: weakref.WeakSet[Any] = weakref.WeakSet()


def _pool_locks() -> list[Any]:
    """The locks of the pools this process has used since it started or was forked."""
    here = os.getpid()
    return [
        lock
        for pool in list(_pools)
        if getattr(pool, "pid", None) == here and (lock := getattr(pool, "_lock", None)) is not None
    ]


hold_across_fork(_pool_locks)


def remember_pool(client: Any) -> None:
    """Hold the lock of client's pool through every fork (see above)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        _pools.add(pool)


class Codec:
    """Encodes values as the alias's own ``cache.set`` would (serializer and compressor), and
    decodes what it stored. ``loads`` takes bytes; with ``buffers`` it also takes a
    ``memoryview`` (as ``pickle.loads`` does), so that a value is decoded where it lies in the
    server's reply instead of being copied out of it first (a 1 MB value, 0.5 ms).

    >>> Codec(pickle.dumps, pickle.loads, buffers=True)
    """

    __slots__ = ("_dumps", "decode")

    def __init__(
        self, dumps: Callable[[Any], Any], loads: Callable[[Any], Any], buffers: bool = False
    ) -> None:
        self._dumps = dumps
        self.decode: Callable[[bytes | memoryview], Any] = loads if buffers else _bytes_to(loads)

    def encode(self, value: Any) -> bytes:
        try:
            encoded = self._dumps(value)
        except Exception as exc:
            raise UnserializableValue(f"cannot serialise {type(value).__name__}: {exc}") from exc
        return encoded if isinstance(encoded, bytes) else str(encoded).encode()


def _bytes_to(loads: Callable[[bytes], Any]) -> Callable[[bytes | memoryview], Any]:
    def decode(payload: bytes | memoryview) -> Any:
        return loads(payload if type(payload) is bytes else bytes(payload))

    return decode


def _pickle_first(loads: Callable[[bytes], Any]) -> Callable[[bytes | memoryview], Any]:
    """``loads``, but a pickle (protocol 2 or later: it starts with 0x80, which no number
    does) goes to ``pickle.loads`` at once, where it lies; ``loads`` would first try
    ``int(value)``, which raises on every pickle (about 2 us)."""

    def decode(payload: bytes | memoryview, fast: Callable[[Any], Any] = pickle.loads) -> Any:
        if payload[:1] == b"\x80":
            return fast(payload)
        return loads(payload if type(payload) is bytes else bytes(payload))

    return decode


_PICKLE_DEFAULTS = {
    ("django_redis.serializers.pickle", "PickleSerializer"),
    ("django_redis.compressors.identity", "IdentityCompressor"),
    ("django_valkey.serializers.pickle", "PickleSerializer"),
    ("django_valkey.compressors.identity", "IdentityCompressor"),
}


def client_codec(inner: Any) -> Codec:
    """The codec of a django-redis or django-valkey client: its own ``encode``/``decode``,
    with pickles decoded at once on the default configuration (pickle, no compression)."""
    parts = (inner._serializer, inner._compressor)
    if not all((type(p).__module__, type(p).__name__) in _PICKLE_DEFAULTS for p in parts):
        return Codec(inner.encode, inner.decode)
    return Codec(inner.encode, _pickle_first(inner.decode), buffers=True)


def builtin_codec(serializer: Any) -> Codec:
    """The codec of Django's own ``RedisCache``: its serializer's, with pickles decoded at once
    when it is Django's default serializer."""
    default = (type(serializer).__module__, type(serializer).__name__) == (
        "django.core.cache.backends.redis",
        "RedisSerializer",
    )
    if not default:
        return Codec(serializer.dumps, serializer.loads)
    return Codec(serializer.dumps, _pickle_first(serializer.loads), buffers=True)


_SYNC_ONLY = frozenset(
    (
        "parser_class",
        "retry",
        "event_dispatcher",
        "redis_connect_func",
        "himport_registry",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
        "connection_pool_handler",
    )
)


def async_client(client: Any, library: str, client_name: str) -> Any:
    """A client of ``library`` (``redis.asyncio``) with the sync client's connection settings,
    or None when its connections have no async twin there."""
    asyncio_library = importlib.import_module(library)
    async_connection = importlib.import_module(f"{library}.connection")
    pool = client.connection_pool
    connection_class = getattr(async_connection, pool.connection_class.__name__, None)
    if connection_class is None:
        return None
    accepted = set()
    for cls in connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            accepted |= set(inspect.signature(init).parameters)
    kwargs = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if name in accepted and name not in _SYNC_ONLY
    }
    # Blocking: a thousand coroutines reading at once queue for the pool's connections instead
    # of failing with "Too many connections" (which would look like an outage).
    async_pool = asyncio_library.BlockingConnectionPool(
        connection_class=connection_class,
        max_connections=getattr(pool, "max_connections", None) or 100,
        timeout=kwargs.get("socket_connect_timeout") or kwargs.get("socket_timeout") or 20,
        **kwargs,
    )
    return getattr(asyncio_library, client_name)(connection_pool=async_pool)
