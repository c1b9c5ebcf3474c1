"""Sans-I/O drivers: logic written once as a generator of operations, run by a sync driver (a
sync target, the caller's function) or an async one (the target's async twin, the caller's
coroutine function).

A step generator asks for an operation with :func:`ask`, naming it by the contract's own
method, so that a type checker follows the arguments and the result, and "find usages" of
``Backend.fetch`` finds every step that fetches. A failed operation (or the caller's own
function) is thrown into the steps, so their ``try``/``except`` blocks see real errors::

    def steps():
        fetched = yield from ask(Backend.read, keys)   # backend.read(keys) / await twin.read(keys)
        result, to_store = yield COMPUTE               # compute() / await acompute()
        return result

    drive(steps(), backend, compute)           # sync
    await adrive(steps(), twin, acompute)      # async: the twin has the same methods, async
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

__all__ = ["COMPUTE", "Op", "Steps", "adrive", "ask", "drive"]

P = ParamSpec("P")
R = TypeVar("R")


class Op(Generic[R]):
    """One operation the steps ask for: the target's method of ``name`` with ``args`` and
    ``kwargs`` (the async driver awaits it), or :data:`COMPUTE`."""

    __slots__ = ("args", "kwargs", "name")

    def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs

    def __repr__(self) -> str:
        return f"<Op {self.name}{self.args!r}>"


Steps = Generator[Op[Any], Any, R]

#: Run the caller's function (or coroutine function) and send back what it returned.
COMPUTE: Op[Any] = Op("compute", (), {})


def ask(
    method: Callable[Concatenate[Any, P], R], *args: P.args, **kwargs: P.kwargs
) -> Generator[Op[R], Any, R]:
    """``target.method(*args, **kwargs)``, where ``method`` is the sync contract's function
    (``Backend.fetch``); the async twin's method of the same name is awaited instead.

    >>> found = yield from ask(Backend.fetch, keys, token, lock_ttl)
    """
    result: R = yield Op(method.__name__, args, kwargs)
    return result


def drive(steps: Steps[R], target: Any, compute: Callable[[], Any] | None = None) -> R:
    """Run ``steps`` with a sync target and a sync ``compute``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            if op is COMPUTE:
                assert compute is not None, "these steps compute, but no function was given"
                value = compute()
            else:
                value = getattr(target, op.name)(*op.args, **op.kwargs)
        except BaseException as exc:  # thrown into the steps, which decide
            error, value = exc, None


async def adrive(
    steps: Steps[R], target: Any, compute: Callable[[], Awaitable[Any]] | None = None
) -> R:
    """Run ``steps`` with an async target and an async ``compute``."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            if op is COMPUTE:
                assert compute is not None, "these steps compute, but no function was given"
                value = await compute()
            else:
                value = await getattr(target, op.name)(*op.args, **op.kwargs)
        except BaseException as exc:  # thrown into the steps, which decide
            error, value = exc, None
