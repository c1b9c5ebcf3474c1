"""Sans-I/O drivers: logic written once as a generator of backend operations, run by a sync
driver (the sync adapter, the caller's function) or an async one (the adapter's async twin,
the caller's coroutine function).

A step generator yields operations and receives their results; a failed operation (or the
caller's own function) is thrown into it, so its ``try``/``except`` blocks see real errors::

    def steps():
        fetched = yield call("read", keys)     # backend.read(keys) / await abackend.read(keys)
        result, to_store = yield COMPUTE       # compute() / await acompute()
        return result

    drive(steps(), backend, compute)           # sync
    await adrive(steps(), abackend, acompute)  # async
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["COMPUTE", "Op", "Steps", "adrive", "call", "drive"]

R = TypeVar("R")

#: An operation: ``("call", method name, arguments, keyword arguments)`` on the backend, or
#: :data:`COMPUTE`.
Op = tuple[Any, ...]
Steps = Generator[Op, Any, R]

#: Run the caller's function (or coroutine function) and send back what it returned.
COMPUTE: Op = ("compute",)


def call(method: str, *args: Any, **kwargs: Any) -> Op:
    """The operation ``backend.<method>(*args, **kwargs)``."""
    return ("call", method, args, kwargs)


def drive(steps: Steps[R], backend: Any, compute: Callable[[], Any] | None = None) -> R:
    """Run ``steps`` with a sync backend and a sync ``compute``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            if op[0] == "call":
                value = getattr(backend, op[1])(*op[2], **op[3])
            else:
                assert compute is not None, "these steps compute, but no function was given"
                value = compute()
        except BaseException as exc:  # thrown into the steps, which decide
            error, value = exc, None


async def adrive(
    steps: Steps[R], backend: Any, compute: Callable[[], Awaitable[Any]] | None = None
) -> R:
    """Run ``steps`` with an async backend and an async ``compute``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            if op[0] == "call":
                value = await getattr(backend, op[1])(*op[2], **op[3])
            else:
                assert compute is not None, "these steps compute, but no function was given"
                value = await compute()
        except BaseException as exc:  # thrown into the steps, which decide
            error, value = exc, None
