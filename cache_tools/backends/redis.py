"""Redis: django-redis's ``RedisCache`` and Django's built-in ``RedisCache``.

Every multi-key operation is one Lua script (kept as ``.lua`` files beside this module), so a
lock acquire, a release with its wake-up, a cache-aside miss that takes the entry's lock, and a
store with its release are each one round trip. Values inside cache-aside envelopes are encoded
with the alias's own serializer and compressor, like ``cache.set`` would.

The two Django backends differ only in where their client and codec live: each adapter
overrides :meth:`RedisBackend.connect`, the one hook a new Redis-protocol backend needs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import redis
from redis.exceptions import (
    BusyLoadingError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    WatchError,
)

from ..errors import (
    BackendUnavailable,
    OutcomeUnknown,
    StoreRefused,
    UnserializableValue,
    UpdateConflict,
)
from .base import HIT, MISS, STALE, Backend, EntryKeys, Fetched, LockKeys, ScanReport, ServerKey

__all__ = ["BuiltinRedisBackend", "Codec", "DjangoRedisBackend", "RedisBackend"]

_HERE = Path(__file__).parent
_LONGEST_WAIT = 1.0  # seconds; WAITER_GRACE_MS in _common.lua is twice this


class _Script:
    """One Lua script with ``_common.lua`` prepended, run by EVALSHA with an EVAL fallback."""

    def __init__(self, name: str) -> None:
        common = (_HERE / "_common.lua").read_text()
        self.source = common + "\n" + (_HERE / f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: list[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


@functools.cache
def _script(name: str) -> _Script:
    return _Script(name)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class Codec:
    """Encodes values as the alias's own ``cache.set`` would (serializer and compressor)."""

    __slots__ = ("_dumps", "decode")

    def __init__(self, dumps: Callable[[Any], Any], loads: Callable[[bytes], Any]) -> None:
        self._dumps, self.decode = dumps, loads

    def encode(self, value: Any) -> bytes:
        try:
            encoded = self._dumps(value)
        except Exception as exc:
            raise UnserializableValue(f"cannot serialise {type(value).__name__}: {exc}") from exc
        return encoded if isinstance(encoded, bytes) else str(encoded).encode()


# redis-py raises WatchError both for a real conflict and for a connection lost while
# watching; only this message means another writer changed the key.
_CONFLICT = "Watched variable changed"


def _sent_before_failing(exc: redis.RedisError) -> bool:
    """False when the connection failed before the request left (nothing was applied)."""
    return "connecting to" not in str(exc).lower()


def _translation(alias: str, exc: redis.RedisError) -> Exception | None:
    """cache_tools's error for a redis-py error (None: not ours to translate)."""
    if isinstance(exc, BusyLoadingError):  # refused while loading its data: nothing applied
        return BackendUnavailable(f"cache {alias!r} is starting: {exc}")
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        if _sent_before_failing(exc):
            return OutcomeUnknown(
                f"cache {alias!r} did not answer; the request may or may not have been "
                f"applied: {exc}"
            )
        return BackendUnavailable(f"cache {alias!r} is unreachable: {exc}")
    if isinstance(exc, ResponseError):
        message = str(exc)
        if isinstance(exc, OutOfMemoryError) or "OOM command not allowed" in message:
            return StoreRefused(f"cache {alias!r} refused the write (maxmemory): {exc}")
        if "MISCONF" in message:
            return StoreRefused(f"cache {alias!r} refuses writes: {exc}")
        if isinstance(exc, ReadOnlyError) or "READONLY" in message:  # a replica, mid-failover
            return BackendUnavailable(f"cache {alias!r} is read-only now: {exc}")
    return None


@contextlib.contextmanager
def _translated(alias: str) -> Iterator[None]:
    """redis-py's errors as cache_tools's: outages, unknown outcomes and refusals."""
    try:
        yield
    except redis.RedisError as exc:
        error = _translation(alias, exc)
        if error is None:
            raise
        raise error from exc


class RedisBackend(Backend):
    """The adapter for Redis-protocol caches; subclasses say where the client and codec are."""

    can_list_keys = True
    clear_is_global = True
    atomic_update = True

    def __init__(self, alias: str) -> None:
        super().__init__(alias)
        self._connected: tuple[redis.Redis, Codec, float] | None = None

    def connect(self) -> tuple[redis.Redis, Codec]:
        """A redis-py client for the alias and the alias's value codec: the one hook a
        Redis-protocol backend overrides. Called once per adapter; the client must be safe to
        share between threads (redis-py's clients are, and their pools notice a fork)."""
        raise NotImplementedError

    def connection(self) -> tuple[redis.Redis, Codec]:
        """The alias's client and codec, made once by :meth:`connect`."""
        connected = self._connected or self._connect()
        return connected[0], connected[1]

    def _connect(self) -> tuple[redis.Redis, Codec, float]:
        client, codec = self.connect()
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        longest = min(_LONGEST_WAIT, socket_timeout / 2) if socket_timeout else _LONGEST_WAIT
        self._connected = (client, codec, longest)
        return self._connected

    def client(self) -> redis.Redis:
        return (self._connected or self._connect())[0]

    def _run(
        self, name: str, keys: Sequence[str], args: list[Any], client: Any = None
    ) -> Any:
        try:
            return _script(name)(client or self.client(), keys, args)
        except redis.RedisError as exc:
            error = _translation(self.alias, exc)
            if error is None:
                raise
            raise error from exc

    # Locks -------------------------------------------------------------------------------

    @property
    def max_wait(self) -> float:
        return (self._connected or self._connect())[2]

    def _claim_ms(self) -> int:
        """How long a waiter's place in line, and a lock handed to it, last unclaimed."""
        return round((2 * self.max_wait + 0.5) * 1000)

    def acquire(
        self, keys: LockKeys, token: str, ttl: float, register_waiter: bool, attempt: int = 0
    ) -> tuple[bool, int | float]:
        number = self._run(
            "lock_acquire",
            [keys.lock, keys.fence, keys.line, keys.deadlines],
            [token, _ms(ttl), int(register_waiter), self._claim_ms()],
        )
        if number > 0:
            return True, number
        return False, (-1 - number) / 1000

    def release(self, keys: LockKeys, token: str, wake_all: bool = False) -> bool:
        released = self._run(
            "lock_release",
            [keys.lock, keys.signal, keys.waiters, keys.fence, keys.line, keys.deadlines],
            [token, "all" if wake_all else "one", self._claim_ms()],
        )
        return bool(released)

    def extend(self, keys: LockKeys, token: str, ttl: float) -> bool:
        return bool(self._run("lock_extend", [keys.lock], [token, _ms(ttl)]))

    def owner(self, keys: LockKeys) -> str | None:
        with _translated(self.alias):
            token = cast(bytes | None, self.client().get(keys.lock))
        return None if token is None else token.decode()

    def wait(self, keys: LockKeys, timeout: float, token: str | None = None) -> bool:
        # BLPOP takes seconds with millisecond precision (Redis >= 6); 0 would mean forever.
        signal = keys.signal if token is None else f"{keys.lock}#t:{token}"
        with _translated(self.alias):
            return self.client().blpop([signal], timeout=max(timeout, 0.001)) is not None

    def waiters(self, keys: LockKeys) -> int | None:
        with _translated(self.alias):
            pipe = self.client().pipeline(transaction=False)
            pipe.exists(keys.lock)
            pipe.get(keys.waiters)
            pipe.hlen(keys.deadlines)
            held, registered, in_line = pipe.execute()
        # Registrations can outlive waiters that gave up; only a held lock has any.
        return int(registered or 0) + int(in_line) if held else 0

    def exists(self, key: ServerKey) -> bool:
        with _translated(self.alias):
            return bool(self.client().exists(key))

    def delete(self, key: ServerKey) -> bool:
        with _translated(self.alias):
            return bool(self.client().delete(key))

    # Cache-aside -------------------------------------------------------------------------

    def read(self, keys: EntryKeys) -> Fetched:
        client, codec, _ = self._connected or self._connect()
        try:
            envelope, generation = cast(
                list[bytes | None], client.mget([keys.value, keys.generation])
            )
        except redis.RedisError as exc:
            raise _translation(self.alias, exc) or exc from exc
        if generation is None or envelope is None or not envelope.startswith(b"ct1|"):
            return Fetched(MISS)
        _, entry_generation, stale_after, payload = envelope.split(b"|", 3)
        if entry_generation != generation:
            return Fetched(MISS)
        # Stale times come from the server's clock at store time; hosts are assumed in sync.
        fresh = stale_after == b"0" or time.time() * 1000 < int(stale_after)
        state = HIT if fresh else STALE
        return Fetched(state, value=codec.decode(payload), generation=int(generation))

    def fetch(self, keys: EntryKeys, token: str | None, lock_ttl: float) -> Fetched:
        lock = keys.lock
        client, codec = self.connection()
        state, envelope, number, generation = self._run(
            "aside_fetch",
            [keys.value, keys.generation, lock.lock, lock.fence, lock.waiters],
            [token or "", _ms(lock_ttl)],
            client,
        )
        generation = int(generation)
        if state == -1:
            return Fetched(MISS, wait=max(number, 0) / 1000, generation=generation)
        fence = int(number) or None
        if state == 0:
            return Fetched(MISS, fence=fence, generation=generation)
        value = codec.decode(envelope.split(b"|", 3)[3])
        kind = HIT if state == 1 else STALE
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
    ) -> bool:
        client, codec = self.connection()
        payload = codec.encode(value)
        fresh_ms = 0 if timeout is None or not stale else _ms(timeout)
        ttl_ms = 0 if timeout is None else _ms(timeout + stale)
        args: list[Any] = [
            payload,
            fresh_ms,
            ttl_ms,
            "" if generation is None else generation,
            token or "",
            fence or 0,
        ]
        lock = keys.lock
        entry_keys = [keys.value, keys.generation, lock.lock, lock.fence, lock.waiters, lock.signal]
        return bool(self._run("aside_store", entry_keys, args, client))

    def invalidate(self, keys: EntryKeys) -> bool:
        return bool(self._run("aside_invalidate", [keys.value, keys.lock.fence], []))

    def bump_generation(self, generation_key: ServerKey, ttl: float | None = None) -> int:
        return int(self._run("generation_bump", [generation_key], []))

    def add_counts(self, counts: Mapping[ServerKey, Mapping[str, int]]) -> None:
        with _translated(self.alias):
            pipe = self.client().pipeline(transaction=False)
            for stats_key, fields in counts.items():
                for field, increment in fields.items():
                    pipe.hincrby(stats_key, field, increment)
            pipe.execute()

    def read_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> dict[str, int]:
        with _translated(self.alias):
            numbers = self.client().hmget(stats_key, fields)
        return {field: int(number or 0) for field, number in zip(fields, numbers, strict=True)}

    def delete_counts(self, stats_key: ServerKey, fields: tuple[str, ...]) -> None:
        with _translated(self.alias):
            self.client().delete(stats_key)

    # Clearing ----------------------------------------------------------------------------

    def namespace_pattern(self, glob: str = "*") -> str:
        """A glob for the alias's keys (its ``KEY_PREFIX`` and ``VERSION``) matching ``glob``.

        The alias's own prefix is escaped, so only ``glob`` acts as a pattern.
        """
        marker = "\x00cache-tools-marker\x00"
        before, _, after = self.cache.make_key(marker).partition(marker)
        return _escape_glob(before) + glob + _escape_glob(after)

    def delete_matching(
        self,
        pattern: str,
        *,
        batch_size: int = 1000,
        dry_run: bool = False,
        progress: Callable[[ScanReport], None] | None = None,
    ) -> ScanReport:
        """SCAN (never KEYS) and UNLINK in batches of at most ``batch_size``, streaming."""
        report = ScanReport()
        with _translated(self.alias):
            client = self.client()
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=batch_size):
                batch.append(key)
                if len(batch) >= batch_size:
                    self._delete_batch(client, batch, report, dry_run)
                    batch = []
                    if progress:
                        progress(report)
            if batch:
                self._delete_batch(client, batch, report, dry_run)
        return report

    @staticmethod
    def _delete_batch(client: Any, batch: list[bytes], report: ScanReport, dry_run: bool) -> None:
        report.matched += len(batch)
        report.batches += 1
        report.largest_batch = max(report.largest_batch, len(batch))
        if not dry_run:
            report.deleted += client.unlink(*batch)

    def count_all(self) -> int:
        with _translated(self.alias):
            return int(self.client().dbsize())

    # Atomic read-modify-write ------------------------------------------------------------

    def update(
        self, key: str, function: Callable[[Any], Any], timeout: float | None, budget: float
    ) -> Any:
        client, codec = self.connection()
        key = self.cache.make_key(key)
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            pipe = client.pipeline(transaction=True)
            try:
                done, new = self._update_once(pipe, key, function, codec, timeout)
                if done:
                    return new
            finally:
                with contextlib.suppress(redis.RedisError):  # UNWATCH on a server that may be gone
                    pipe.reset()
            if time.monotonic() >= deadline:
                raise UpdateConflict(
                    f"update of {key!r} lost {attempt} races with other writers in {budget:g}s"
                )
            # Jittered backoff, growing with each lost race, before reading again.
            time.sleep(random.uniform(0, min(0.0005 * 2**attempt, 0.05)))

    def _update_once(
        self,
        pipe: Any,
        key: str,
        function: Callable[[Any], Any],
        codec: Codec,
        timeout: float | None,
    ) -> tuple[bool, Any]:
        """One optimistic attempt: ``(True, new value)``, or ``(False, None)`` when another
        writer changed the key meanwhile."""
        try:
            with _translated(self.alias):
                pipe.watch(key)
                raw = pipe.get(key)
        except WatchError as exc:  # redis-py's name for a connection lost while watching
            raise BackendUnavailable(f"cache {self.alias!r} is unreachable: {exc}") from exc
        new = function(None if raw is None else codec.decode(raw))  # the caller's own code
        payload = codec.encode(new)
        try:
            with _translated(self.alias):
                pipe.multi()
                pipe.set(key, payload, px=None if timeout is None else _ms(timeout))
                pipe.execute()
        except WatchError as exc:
            if _CONFLICT in str(exc):
                return False, None
            raise OutcomeUnknown(  # the connection broke around EXEC
                f"update of {key!r}: the connection to cache {self.alias!r} broke while "
                f"writing; the update may or may not have been applied: {exc}"
            ) from exc
        return True, new


class DjangoRedisBackend(RedisBackend):
    """django-redis's ``RedisCache`` (its default client, and Sentinel/sharded clients that
    offer ``get_client``)."""

    def connect(self) -> tuple[redis.Redis, Codec]:
        inner = self.cache.client  # type: ignore[attr-defined]
        return inner.get_client(write=True), Codec(inner.encode, inner.decode)


class BuiltinRedisBackend(RedisBackend):
    """Django's own ``django.core.cache.backends.redis.RedisCache``."""

    def connect(self) -> tuple[redis.Redis, Codec]:
        inner = self.cache._cache  # type: ignore[attr-defined]
        serializer = inner._serializer
        return inner.get_client(write=True), Codec(serializer.dumps, serializer.loads)
