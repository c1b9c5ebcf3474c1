"""Valkey: django-valkey's ``ValkeyCache`` (default, Sentinel and sharded clients),
``ClusterValkeyCache`` and ``AsyncValkeyCache``, on the Redis adapter's scripts.

Valkey speaks the Redis protocol and valkey-py mirrors redis-py, so these adapters are the
Redis adapter with valkey-py's exception classes and clients (``pip install
django-cache-flight[valkey]``). On a cluster every script's keys share one hash tag
(``ct:v:{function}:…``, ``ct:lock:{name}#f``), so each runs on the node that owns the slot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import valkey.exceptions
from django.core.exceptions import ImproperlyConfigured
from django_valkey.base import BaseValkeyCache
from django_valkey.client.default import DefaultClient

from .records import ServerKey
from .redis import RedisBackend
from .redis_clients import Codec, client_codec
from .redis_errors import ClientErrors
from .redis_transport import RedisIO

__all__ = ["AsyncValkeyBackend", "ClusterValkeyBackend", "ValkeyBackend"]

VALKEY_ERRORS = ClientErrors.of(valkey.exceptions)


class ValkeyBackend(RedisBackend):
    """django-valkey's ``ValkeyCache``, with its default, Sentinel or sharded client (the
    last two via ``get_client``, as django-redis's)."""

    errors = VALKEY_ERRORS
    async_library = ("valkey.asyncio", "Valkey")
    plain_make_keys = (BaseValkeyCache.make_key,)

    def connect(self) -> tuple[Any, Codec]:
        inner = self.cache_client()
        return inner.get_client(write=True), client_codec(inner)


class AsyncValkeyBackend(ValkeyBackend):
    """django-valkey's ``AsyncValkeyCache``. Its own client is async-only, so the sync
    operations use a sync client made from the same settings (``LOCATION`` and ``OPTIONS``),
    and the async ones a ``valkey.asyncio`` client per event loop, like every Redis adapter."""

    def connect(self) -> tuple[Any, Codec]:
        inner = self.cache_client()
        params = dict(inner._params)
        options = dict(params.get("OPTIONS") or {})
        if options.get("CONNECTION_FACTORY") or "Sentinel" in type(inner).__name__:
            raise ImproperlyConfigured(
                f"cache alias {self.alias!r}: cache_tools supports AsyncValkeyCache with its "
                "default client; for Sentinel use ValkeyCache with SentinelClient (its async "
                "operations run in worker threads)"
            )
        options.pop("CLIENT_CLASS", None)
        params["OPTIONS"] = options
        sync = DefaultClient(inner._server, params, self.cache)
        return sync.get_client(write=True), client_codec(sync)


class _ClusterIO(RedisIO):
    """Requests on a cluster client; optimistic transactions (``update``) go to the node that
    owns the key, as WATCH needs one connection."""

    def watch(self, key: str) -> tuple[Any, bytes | None]:
        node = self.client.get_node_from_key(key)
        pipe = self.client.get_valkey_connection(node).pipeline(transaction=True)
        try:
            pipe.watch(key)
            return pipe, pipe.get(key)
        except BaseException as exc:
            self.reset(pipe)
            if isinstance(exc, self.errors.connection):
                with contextlib.suppress(*self.errors.base):
                    self.client.nodes_manager.initialize()  # find the new owner of the slot
            raise


class ClusterValkeyBackend(ValkeyBackend):
    """django-valkey's ``ClusterValkeyCache`` (Valkey or Redis Cluster).

    ``clear_cache`` scans every primary. Per-process copies (``local=``) are not kept: client
    tracking would need a listener on every node. Async operations run in worker threads.
    """

    tracking = False
    # An entry's script reads its tags' versions, so they live in its function's slot: a tag
    # is kept once per function, and invalidating it bumps one key per function that may
    # carry it (the functions processes have noted), one script per key.
    tags_per_function = True

    def bump_tags(self, keys: Sequence[ServerKey]) -> None:
        for key in keys:
            self.bump_generation(key)

    def connect(self) -> tuple[Any, Codec]:
        inner = self.cache_client()
        probe = self.server_key(self._name("v", "probe"))
        if not probe.endswith(":{probe}") or "{" in probe[: -len("{probe}")]:
            raise ImproperlyConfigured(
                f"cache alias {self.alias!r} is a cluster: its KEY_PREFIX and key function "
                f"must not add '{{' or '}}' to keys (got {probe!r}), or an entry's keys would "
                "hash to different slots"
            )
        return inner.get_client(write=True), client_codec(inner)

    def connection_settings(self, client: Any) -> dict[str, Any]:
        return dict(client.get_connection_kwargs())

    def io(self, client: Any) -> RedisIO:
        return _ClusterIO(client, self.errors)

    def async_client(self) -> Any:
        return None  # worker threads (waits included: they block on the server's signal)

    def servers(self) -> list[Any]:
        client: Any = self.client()
        return [client.get_valkey_connection(node) for node in client.get_primaries()]

    def unlink(self, server: Any, keys: list[bytes]) -> int:
        # One command per key, pipelined: the keys of a batch span slots.
        pipe = server.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        return sum(pipe.execute())
