"""What the Redis adapter's operations send, written once as steps (:mod:`cache_tools.drive`)
over two small I/O classes: :class:`RedisIO` on a sync client, :class:`AsyncRedisIO` on a
``redis.asyncio`` one. The steps hold the logic (EVALSHA then EVAL, the echoed nonce, error
translation, the optimistic-transaction loop); the I/O classes only move bytes.

>>> steps = Transport("default", REDIS_ERRORS).script("lock_owner", [key], [])
>>> owner = drive(steps, RedisIO(client))
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._process import jitter
from ..drive import Steps, ask
from ..errors import BackendUnavailable, OutcomeUnknown, UpdateConflict
from ._wire import NOT_SENT, AsyncWire, Check, Wire
from .records import EntryKeys
from .redis_errors import CONFLICT, REDIS_ERRORS, ClientErrors, raise_translated
from .redis_scripts import Echo, get_script

__all__ = ["AsyncRedisIO", "RedisIO", "Transport"]


class RedisIO:
    """Requests on a sync client, errors as the client library raises them."""

    def __init__(self, client: Any, errors: ClientErrors = REDIS_ERRORS) -> None:
        self.client, self.errors = client, errors
        self.wire = Wire(client, errors.connection, (errors.response,))

    def send(self, command: Sequence[Any], check: Check) -> Any:
        """A hot command (see :mod:`._wire`), through the client where the wire cannot send
        it; a reply that ``check`` refuses raises."""
        reply = self.wire.send(command, check)
        if reply is NOT_SENT:
            reply = self.client.execute_command(*command)
            if not check(reply):  # through the client: its pool drops such a connection
                raise self.wire.unexpected(reply)
        return reply

    def execute(self, *command: Any) -> Any:
        return self.client.execute_command(*command)

    def read_entry(self, keys: EntryKeys, check: Check) -> Any:
        return self.wire.read_entry(keys, check)

    def watch(self, key: str) -> tuple[Any, bytes | None]:
        """Start an optimistic transaction on ``key``: ``(transaction, value)``."""
        pipe = self.client.pipeline(transaction=True)
        try:
            pipe.watch(key)
            return pipe, pipe.get(key)
        except BaseException:
            self.reset(pipe)
            raise

    def commit(self, pipe: Any, key: str, payload: bytes, px: int | None) -> None:
        try:
            pipe.multi()
            pipe.set(key, payload, px=px)
            pipe.execute()
        finally:
            self.reset(pipe)

    def reset(self, pipe: Any) -> None:
        with contextlib.suppress(*self.errors.base):  # UNWATCH on a server that may be gone
            pipe.reset()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class AsyncRedisIO:
    """The same requests on an asyncio client (same names, awaited)."""

    def __init__(self, client: Any, errors: ClientErrors = REDIS_ERRORS) -> None:
        self.client, self.errors = client, errors
        self.wire = AsyncWire(client, errors.connection)

    async def send(self, command: Sequence[Any], check: Check) -> Any:
        reply = await self.wire.send(command, check)
        if reply is NOT_SENT:
            reply = await self.client.execute_command(*command)
            if not check(reply):
                raise self.wire.unexpected(reply)
        return reply

    async def execute(self, *command: Any) -> Any:
        return await self.client.execute_command(*command)

    async def read_entry(self, keys: EntryKeys, check: Check) -> Any:
        return await self.wire.read_entry(keys, check)

    async def watch(self, key: str) -> tuple[Any, bytes | None]:
        pipe = self.client.pipeline(transaction=True)
        try:
            await pipe.watch(key)
            return pipe, await pipe.get(key)
        except BaseException:
            await self.reset(pipe)
            raise

    async def commit(self, pipe: Any, key: str, payload: bytes, px: int | None) -> None:
        try:
            pipe.multi()
            pipe.set(key, payload, px=px)
            await pipe.execute()
        finally:
            await self.reset(pipe)

    async def reset(self, pipe: Any) -> None:
        with contextlib.suppress(*self.errors.base):
            await pipe.reset()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Transport:
    """The steps of a script, a command and an optimistic update, for one alias: client
    errors come out translated (:func:`.redis_errors.translation`)."""

    def __init__(self, alias: str, errors: ClientErrors) -> None:
        self.alias, self.errors = alias, errors

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Steps[Any]:
        """Run ``<name>.lua``: EVALSHA, and EVAL when the server does not have it yet."""
        script, echo = get_script(name), Echo()
        arguments = (len(keys), *keys, *args, echo.nonce)
        try:
            try:
                reply = yield from ask(RedisIO.send, ("EVALSHA", script.sha, *arguments), echo)
            except self.errors.no_script:
                reply = yield from ask(RedisIO.send, ("EVAL", script.source, *arguments), echo)
        except self.errors.base as exc:
            raise_translated(self.alias, exc, self.errors)
        return echo.unwrap(reply)

    def command(self, *command: Any) -> Steps[Any]:
        try:
            return (yield from ask(RedisIO.execute, *command))
        except self.errors.base as exc:
            raise_translated(self.alias, exc, self.errors)

    def update(
        self,
        key: str,
        function: Callable[[Any], Any],
        codec: Any,
        px: int | None,
        budget: float,
    ) -> Steps[Any]:
        """WATCH, apply ``function`` to the decoded value, MULTI/SET/EXEC; again after a
        conflict (jittered, growing backoff) until ``budget`` seconds ran out."""
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            pipe, raw = yield from self._watch(key)
            try:
                new = function(None if raw is None else codec.decode(raw))  # the caller's code
                payload = codec.encode(new)
            except BaseException:
                yield from ask(RedisIO.reset, pipe)
                raise
            if (yield from self._commit(pipe, key, payload, px)):
                return new
            if time.monotonic() >= deadline:
                raise UpdateConflict(
                    f"update of {key!r} lost {attempt} races with other writers in {budget:g}s"
                )
            yield from ask(RedisIO.sleep, jitter.get().uniform(0, min(0.0005 * 2**attempt, 0.05)))

    def _watch(self, key: str) -> Steps[tuple[Any, bytes | None]]:
        try:
            return (yield from ask(RedisIO.watch, key))
        except self.errors.watch as exc:  # redis-py's name for a connection lost while watching
            raise BackendUnavailable(f"cache {self.alias!r} is unreachable: {exc}") from exc
        except self.errors.base as exc:
            raise_translated(self.alias, exc, self.errors)

    def _commit(self, pipe: Any, key: str, payload: bytes, px: int | None) -> Steps[bool]:
        """True when written; False when another writer changed the key since WATCH."""
        try:
            yield from ask(RedisIO.commit, pipe, key, payload, px)
        except self.errors.watch as exc:
            if CONFLICT in str(exc):
                return False
            raise OutcomeUnknown(  # the connection broke around EXEC
                f"update of {key!r}: the connection to cache {self.alias!r} broke "
                f"while writing; the update may or may not have been applied: {exc}"
            ) from exc
        except self.errors.base as exc:
            raise_translated(self.alias, exc, self.errors)
        return True
