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
    return (
        callable(first_argument)
        and not isinstance(first_argument, str)
        and getattr(first_argument, "__name__", "") != "<lambda>"
    )


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
