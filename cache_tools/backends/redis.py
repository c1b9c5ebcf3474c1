"""Redis: django-redis's ``RedisCache`` and Django's built-in ``RedisCache``.

Every multi-key operation is one Lua script (kept as ``.lua`` files beside this module), so a
lock acquire, a release with its wake-up, a cache-aside hit with its statistics, and a store
with its release are each one round trip. Values inside cache-aside envelopes are encoded with
the alias's own serializer and compressor, like ``cache.set`` would.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import NoScriptError, WatchError

from ..errors import BackendUnavailable, UnserializableValue, UpdateConflict
from .base import Backend, EntryKeys, Fetched, LockKeys

_HERE = Path(__file__).parent
_FENCE_TTL_MS = 86_400_000  # a fence counter idle for a day restarts above its old values
_LONGEST_WAIT = 1.0


class _Script:
    """One Lua script with ``_common.lua`` prepended, run by EVALSHA with an EVAL fallback."""

    def __init__(self, name: str) -> None:
        common = (_HERE / "_common.lua").read_text()
        self.source = common + "\n" + (_HERE / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


@functools.cache
def _script(name: str) -> _Script:
    return _Script(name)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@contextlib.contextmanager
def _outage_as_unavailable(alias: str) -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BackendUnavailable(f"cache {alias!r} is unreachable: {exc}") from exc


class RedisBackend(Backend):
    """Adapter for django-redis's and Django's own ``RedisCache``."""

    def client(self) -> redis.Redis:
        cache = self.cache
        inner = getattr(cache, "client", None)
        if inner is not None and hasattr(inner, "get_client"):  # django-redis
            return inner.get_client(write=True)
        return cache._cache.get_client(write=True)  # Django's RedisCache

    def encode(self, value: Any) -> bytes:
        cache = self.cache
        inner = getattr(cache, "client", None)
        encoded = (
            inner.encode(value) if inner is not None else cache._cache._serializer.dumps(value)
        )
        return encoded if isinstance(encoded, bytes) else str(encoded).encode()

    def decode(self, data: bytes) -> Any:
        cache = self.cache
        inner = getattr(cache, "client", None)
        if inner is not None:
            return inner.decode(data)
        return cache._cache._serializer.loads(data)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with _outage_as_unavailable(self.alias):
            return _script(name)(self.client(), keys, args)

    # Locks -------------------------------------------------------------------------------

    @property
    def max_wait(self) -> float:
        socket_timeout = self.client().connection_pool.connection_kwargs.get("socket_timeout")
        if socket_timeout:
            return min(_LONGEST_WAIT, socket_timeout / 2)
        return _LONGEST_WAIT

    def acquire(
        self, keys: LockKeys, token: str, ttl: float, register_waiter: bool
    ) -> tuple[bool, int | float]:
        ttl_ms = _ms(ttl)
        waiters_ttl_ms = ttl_ms + _ms(2 * _LONGEST_WAIT)
        taken, number = self._run(
            "lock_acquire",
            [keys.lock, keys.fence, keys.waiters],
            [token, ttl_ms, max(_FENCE_TTL_MS, 2 * ttl_ms), int(register_waiter), waiters_ttl_ms],
        )
        if taken:
            return True, int(number)
        return False, max(number, 0) / 1000

    def release(self, keys: LockKeys, token: str, wake_all: bool = False) -> bool:
        released = self._run(
            "lock_release",
            [keys.lock, keys.signal, keys.waiters],
            [token, "all" if wake_all else "one", _ms(10 * _LONGEST_WAIT)],
        )
        return bool(released)

    def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        return bool(self._run("lock_extend", [keys.lock], [token, _ms(ttl)]))

    def wait(self, keys: LockKeys, timeout: float) -> bool:
        # BLPOP takes seconds with millisecond precision (Redis >= 6); 0 would mean forever.
        with _outage_as_unavailable(self.alias):
            return self.client().blpop([keys.signal], timeout=max(timeout, 0.001)) is not None

    def exists(self, key: str) -> bool:
        with _outage_as_unavailable(self.alias):
            return bool(self.client().exists(key))

    def delete(self, key: str) -> bool:
        with _outage_as_unavailable(self.alias):
            return bool(self.client().delete(key))

    # Cache-aside -------------------------------------------------------------------------

    def fetch(self, keys: EntryKeys, token: str | None, lock_ttl: float) -> Fetched:
        lock = keys.lock
        lock_ttl_ms = _ms(lock_ttl)
        state, envelope, number, generation = self._run(
            "aside_fetch",
            [keys.value, keys.generation, keys.stats, lock.lock, lock.fence, lock.waiters],
            [
                token or "",
                lock_ttl_ms,
                max(_FENCE_TTL_MS, 2 * lock_ttl_ms),
                lock_ttl_ms + _ms(2 * _LONGEST_WAIT),
            ],
        )
        generation = int(generation)
        if state == -1:
            return Fetched(Fetched.MISS, wait=max(number, 0) / 1000, generation=generation)
        fence = int(number) or None
        if state == 0:
            return Fetched(Fetched.MISS, fence=fence, generation=generation)
        value = self.decode(envelope.split(b"|", 3)[3])
        kind = Fetched.HIT if state == 1 else Fetched.STALE
        return Fetched(kind, value=value, fence=fence, generation=generation)

    def store(
        self,
        keys: EntryKeys,
        value: Any,
        *,
        timeout: float | None,
        stale: float,
        generation: int | None,
        token: str | None = None,
        fence: int | None = None,
        counts: dict[str, int] | None = None,
    ) -> bool:
        try:
            payload = self.encode(value)
        except Exception as exc:
            raise UnserializableValue(f"cannot serialise {type(value).__name__}: {exc}") from exc
        fresh_ms = 0 if timeout is None or not stale else _ms(timeout)
        ttl_ms = 0 if timeout is None else _ms(timeout + stale)
        args: list[Any] = [
            payload,
            fresh_ms,
            ttl_ms,
            "" if generation is None else generation,
            token or "",
            fence or 0,
            _ms(10 * _LONGEST_WAIT),
        ]
        for field, increment in (counts or {}).items():
            args += [field, increment]
        lock = keys.lock
        stored = self._run(
            "aside_store",
            [
                keys.value,
                keys.generation,
                keys.stats,
                lock.lock,
                lock.fence,
                lock.waiters,
                lock.signal,
            ],
            args,
        )
        return bool(stored)

    def invalidate(self, keys: EntryKeys) -> bool:
        return bool(self._run("aside_invalidate", [keys.value, keys.lock.fence], []))

    def bump_generation(self, generation_key: str) -> int:
        with _outage_as_unavailable(self.alias):
            return int(self.client().incr(generation_key))

    def add_counts(self, stats_key: str, counts: dict[str, int]) -> None:
        with _outage_as_unavailable(self.alias):
            pipe = self.client().pipeline(transaction=False)
            for field, increment in counts.items():
                pipe.hincrby(stats_key, field, increment)
            pipe.execute()

    def read_counts(self, stats_key: str) -> dict[str, int]:
        with _outage_as_unavailable(self.alias):
            raw = self.client().hgetall(stats_key)
        return {field.decode(): int(number) for field, number in raw.items()}

    # Atomic read-modify-write ------------------------------------------------------------

    def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, retries: int
    ) -> Any:
        with _outage_as_unavailable(self.alias):
            client = self.client()
            for attempt in range(retries + 1):
                with client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(key)
                        raw = pipe.get(key)
                        new = function(None if raw is None else self.decode(raw))
                        pipe.multi()
                        if timeout is None:
                            pipe.set(key, self.encode(new))
                        else:
                            pipe.set(key, self.encode(new), px=_ms(timeout))
                        pipe.execute()
                        return new
                    except WatchError:
                        # Jittered backoff, growing with each lost race, before reading again.
                        time.sleep(random.uniform(0, min(0.0005 * 2**attempt, 0.05)))
        raise UpdateConflict(f"update of {key!r} lost {retries + 1} races with other writers")
