"""Template fragments cached through the engine: ``{% cache %}`` with single flight across
processes and stale-while-revalidate (the tag itself is in ``templatetags/cache_tools.py``).

A fragment's entries are those of a function named ``template.cache.<fragment name>``; its key
is the one Django's own tag hashes from the ``vary_on`` values (``make_template_fragment_key``),
so the same values share an entry and different ones never do.

>>> invalidate_fragment("sidebar", [request.user.username])
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.cache.utils import make_template_fragment_key

from . import conf
from .backends import resolve_alias
from .flight import NOT_STORED, Flight
from .keys import safe_key
from .tags import note_tagged

__all__ = ["fragment_alias", "invalidate_fragment", "render_fragment"]

#: Where Django's tag keeps fragments when no ``using=`` names a cache, if configured.
FRAGMENTS_ALIAS = "template_fragments"

_guard = threading.Lock()
_flights: dict[tuple[str, str, float], Flight[Any]] = {}


def fragment_alias(using: str | None) -> str:
    """The alias a fragment lives in: ``using``, else ``template_fragments`` when it is
    configured (as Django's tag does), else cache_tools's default."""
    if using is not None:
        return resolve_alias(using)
    if FRAGMENTS_ALIAS in settings.CACHES:
        return FRAGMENTS_ALIAS
    return resolve_alias(conf.default_alias())


def _flight(fragment_name: str, alias: str, stale: float) -> Flight[Any]:
    ident = (fragment_name, alias, stale)
    flight = _flights.get(ident)
    if flight is None:
        with _guard:
            flight = _flights.get(ident)
            if flight is None:
                flight = _flights[ident] = Flight(
                    function_id=f"template.cache.{safe_key(fragment_name)}",
                    alias=alias,
                    timeout=_timeout_of,
                    stale=stale,
                    lock=True,
                    lock_timeout=30.0,
                    refresh_inline=True,  # a refresh renders the caller's own context
                    share_unstored=False,  # one not stored (timeout 0) is rendered by each
                )
    return flight


def _timeout_of(result: tuple[str, float | None]) -> float | None:
    return result[1]


def _argument_key(fragment_name: str, vary_on: Sequence[Any] | None) -> str:
    # Django's key is "template.cache.<name>.<md5 of the vary_on values>": the digest part.
    return make_template_fragment_key(fragment_name, vary_on).rsplit(".", 1)[1]


def render_fragment(
    fragment_name: str,
    vary_on: Sequence[Any],
    render: Callable[[], str],
    *,
    timeout: float | None,
    using: str | None = None,
    stale: float = 0,
    tags: Iterable[str] = (),
) -> str:
    """The fragment for these ``vary_on`` values: from the cache, or ``render()`` once across
    every process (a stale one is re-rendered by the caller that finds it; the others get the
    stale one meanwhile). ``timeout`` None: no expiry; 0 or less: rendered, never stored."""
    alias = fragment_alias(using)
    flight = _flight(fragment_name, alias, stale)
    rendered: list[str] = []

    def compute() -> tuple[tuple[str, float | None], Any]:
        html = render()
        rendered.append(html)
        keep = timeout is None or timeout > 0
        return (html, timeout), (html if keep else NOT_STORED)

    entry_tags = tuple(sorted(set(tags)))
    if entry_tags:
        note_tagged(alias, flight.function_id)
    _, value = flight.get(_argument_key(fragment_name, vary_on), compute, None, entry_tags)
    if rendered:  # rendered by this call (a miss, or the refresh of a stale entry it found)
        return rendered[-1]
    return value  # type: ignore[no-any-return]


def invalidate_fragment(
    fragment_name: str, vary_on: Sequence[Any] | None = None, cache: str | None = None
) -> bool:
    """Drop the fragment cached for ``vary_on`` (the values the tag varies on, in order),
    now and, inside a transaction, again at COMMIT; True if one was there.

    >>> invalidate_fragment("product", [product.pk])
    """
    flight = _flight(fragment_name, fragment_alias(cache), 0)
    return flight.invalidate(_argument_key(fragment_name, vary_on))
