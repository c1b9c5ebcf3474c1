"""The registry of cache warmers used by ``manage.py warm_cache``.

A warmer is a :func:`~cache_tools.cache_aside` function and the argument sets to pre-compute::

    # myapp/cache_warmers.py, imported by warm_cache like admin.py by the admin
    from cache_tools import Call, warmup
    from myapp.profiles import get_profile

    warmup.register(get_profile, lambda: [Call(pk) for pk in active_user_ids()])

``@cache_aside(warm=...)`` registers the same way. A callable is only called when the command
runs, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import autodiscover_modules

if TYPE_CHECKING:
    from .aside import CachedFunction

__all__ = ["Warmer", "autodiscover", "register", "warmers"]


@dataclass(frozen=True)
class Warmer:
    name: str
    function: CachedFunction[Any]
    calls: Iterable[Any] | Callable[[], Iterable[Any]]

    def argument_sets(self) -> list[Any]:
        from .aside import Call

        calls = self.calls() if callable(self.calls) else self.calls
        return [Call.of(call) for call in calls]


_registry: dict[str, Warmer] = {}


def register(
    func: CachedFunction[Any],
    calls: Iterable[Any] | Callable[[], Iterable[Any]],
    *,
    name: str | None = None,
) -> Warmer:
    """Register ``func`` (a ``cache_aside`` function) to be warmed with ``calls``.

    ``calls`` is an iterable, or a callable returning one, of tuples, dicts or ``Call`` objects.
    The name defaults to the function's dotted path; registering a name again replaces it.
    """
    from .aside import CachedFunction

    if not isinstance(func, CachedFunction):
        raise TypeError(f"warmup.register() takes a cache_aside function, not {func!r}")
    warmer = Warmer(name or f"{func.__module__}.{func.__qualname__}", func, calls)
    _registry[warmer.name] = warmer
    return warmer


def warmers() -> dict[str, Warmer]:
    """Every registered warmer by name, after importing each app's ``cache_warmers`` module."""
    autodiscover()
    return dict(_registry)


def autodiscover() -> None:
    autodiscover_modules("cache_warmers")
