"""The registry of cache warmers used by ``manage.py warm_cache``.

A warmer is a :func:`~cache_tools.cache_aside` function and the argument sets to pre-compute::

    # myapp/cache_warmers.py, imported by warm_cache like admin.py by the admin
    from cache_tools import Call, warmup
    from myapp.profiles import get_profile

    warmup.register(get_profile, lambda: [Call(pk) for pk in active_user_ids()])

``@cache_aside(warm=...)`` registers the same way. A callable is only called when the command
runs, never at import. For a cached method, each ``Call`` starts with the instance:
``Call(account, "EUR")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from django.db.models import Model
from django.utils.module_loading import autodiscover_modules

__all__ = ["Call", "WarmOutcome", "Warmable", "Warmer", "autodiscover", "register", "warmers"]

#: What warming one argument set did.
WarmOutcome = Literal["computed", "warm", "not stored"]


def _readable(value: Any) -> str:
    if isinstance(value, Model):
        return f"{value._meta.label}(pk={value.pk!r})"
    return repr(value)


class Call:
    """One set of arguments to pre-compute, for ``warm=``: ``Call(7, detail=True)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    @classmethod
    def of(cls, value: Call | tuple[Any, ...] | dict[str, Any] | Any) -> Call:
        """A ``Call`` from a ``Call``, a tuple of positional or a dict of keyword arguments."""
        if isinstance(value, Call):
            return value
        if isinstance(value, tuple):
            return cls(*value)
        if isinstance(value, dict):
            return cls(**value)
        return cls(value)

    def __repr__(self) -> str:
        parts = [_readable(a) for a in self.args]
        parts += [f"{k}={_readable(v)}" for k, v in self.kwargs.items()]
        return f"Call({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and (self.args, self.kwargs) == (other.args, other.kwargs)

    __hash__ = None  # type: ignore[assignment]


class Warmable(Protocol):
    """What a warmer needs of a cached function (a ``cache_aside`` function has it)."""

    __wrapped__: Callable[..., Any]

    @property
    def is_cached(self) -> Callable[..., bool]: ...

    def warm_call(self, call: Call, *, force: bool = False) -> WarmOutcome: ...

    def cache_key(self, *args: Any, **kwargs: Any) -> str: ...

    @property
    def alias(self) -> str: ...


@dataclass(frozen=True)
class Warmer:
    """A registered warmer: ``name``, the function, its dotted ``path``, and the calls."""

    name: str
    function: Warmable
    calls: Iterable[Any] | Callable[[], Iterable[Any]]
    path: str

    def argument_sets(self) -> list[Call]:
        calls = self.calls() if callable(self.calls) else self.calls
        return [Call.of(call) for call in calls]


_registry: dict[str, Warmer] = {}


def register(
    func: Warmable,
    calls: Iterable[Any] | Callable[[], Iterable[Any]],
    *,
    name: str | None = None,
) -> Warmer:
    """Register ``func`` (a ``cache_aside`` function) to be warmed with ``calls``.

    ``calls`` is an iterable, or a callable returning one, of tuples, dicts or ``Call`` objects.
    The name defaults to the function's dotted path. ``warm_cache`` runs warmers in the order
    they were registered (registering a name again replaces it and moves it last), unless
    names are given on its command line.
    """
    if not callable(getattr(func, "warm_call", None)):
        raise TypeError(f"warmup.register() takes a cache_aside function, not {func!r}")
    path = f"{func.__wrapped__.__module__}.{func.__wrapped__.__qualname__}"
    warmer = Warmer(name or path, func, calls, path)
    _registry.pop(warmer.name, None)
    _registry[warmer.name] = warmer
    return warmer


def warmers() -> dict[str, Warmer]:
    """Every registered warmer by name, after importing each app's ``cache_warmers`` module."""
    autodiscover()
    return dict(_registry)


def autodiscover() -> None:
    autodiscover_modules("cache_warmers")
