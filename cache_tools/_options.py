"""Checks of decorator options shared by locks, cache_aside and cache_view."""

from __future__ import annotations

from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_seconds(value: Any, name: str) -> float:
    """``value`` as seconds; ``ValueError`` naming ``name`` unless it is a number above 0."""
    if not _is_number(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def seconds_or_zero(value: Any, name: str) -> float:
    """``value`` as seconds; ``ValueError`` naming ``name`` unless it is a number >= 0."""
    if not _is_number(value) or value < 0:
        raise ValueError(f"{name} must be 0 or a positive number of seconds, not {value!r}")
    return float(value)


def applied_bare(first_argument: Any) -> bool:
    """True when a decorator factory was applied without parentheses (``@lock_decorator``):
    its first argument is then the decorated function. A lambda is taken as an option."""
    if isinstance(first_argument, classmethod | staticmethod):
        return True  # decorated_function() says what to do
    return (
        callable(first_argument)
        and not isinstance(first_argument, str)
        and getattr(first_argument, "__name__", "") != "<lambda>"
    )


def decorated_function(func: Any, decorator: str) -> Any:
    """``func``, or a ``TypeError`` saying how to fix the decoration: above ``@classmethod``
    or ``@staticmethod`` the decorator gets a descriptor, not the function.

    >>> decorated_function(classmethod(f), "@cache_aside")
    TypeError: @cache_aside must come below @classmethod, nearest the function: ...
    """
    if isinstance(func, classmethod | staticmethod):
        kind = type(func).__name__
        raise TypeError(
            f"{decorator} must come below @{kind}, nearest the function: @{kind} returns a "
            f"descriptor, not a function ({decorator} then caches each call of "
            f"{func.__func__.__qualname__} with its class or arguments as usual)"
        )
    if not callable(func):
        raise TypeError(f"{decorator} decorates a function, not {func!r}")
    return func


#: Copies per function with ``local=True``.
DEFAULT_LOCAL_COPIES = 1000


def local_copies(value: Any) -> int | None:
    """The ``local`` option as a number of copies (None: keep none)."""
    if value is False or value is None:
        return None
    if value is True:
        return DEFAULT_LOCAL_COPIES
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError(f"local must be True, False or a positive number of copies, not {value!r}")
