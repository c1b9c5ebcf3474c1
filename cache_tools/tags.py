"""Tags: names an entry is invalidated by, whatever function stored it.

.. code-block:: python

    @cache_aside(timeout=600, tags=lambda product_id: [f"product:{product_id}"])
    def product_page(product_id): ...

    invalidate_tags("product:7")   # every entry tagged product:7, in O(1)

A tag is a version on the server (``ct:t:<tag>``). An entry is stored under the sum of its
function's generation and its tags' versions, and a hit reads them with the entry in the same
round trip: invalidating a tag is one increment, however many entries carry it, and nothing
lists the members (so nothing can race between a tag's deletion and a new member). On a cluster
a tag's version is kept once per function that carries it, in the function's slot: invalidating
it bumps one key per function (see :doc:`invalidation`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured

from . import recording, stats, transactions
from .backends import get_backend, resolve_alias
from .backends.base import Backend, ServerKey
from .errors import BackendUnavailable
from .local_copies import drop_voided_by

__all__ = ["ainvalidate_tags", "entry_tags", "invalidate_tags", "note_tagged"]

logger = logging.getLogger("cache_tools.tags")

_guard = threading.Lock()
#: Aliases (as given; None: the default) whose functions carry tags, with those functions.
_tagged: dict[str | None, set[str]] = {}


def note_tagged(alias: str | None, function_id: str) -> None:
    """Record that ``function_id`` stores tagged entries in ``alias`` (``invalidate_tags``
    without ``cache`` invalidates in every such alias)."""
    if function_id in _tagged.get(alias, ()):
        return  # the common case, once per call of a tagged fragment: no lock
    with _guard:
        _tagged.setdefault(alias, set()).add(function_id)


def entry_tags(tags: Iterable[str], source: object) -> tuple[str, ...]:
    """``tags`` as an entry's keys take them: checked, distinct and sorted. ``source`` names
    what returned them, for the error.

    >>> entry_tags(["b", "a", "b"], "tags()")
    ('a', 'b')
    """
    if isinstance(tags, (str, bytes)):
        raise TypeError(
            f"{source} must return an iterable of strings, not one {type(tags).__name__}"
        )
    found = set()
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"{source} returned {tag!r}: tags are non-empty strings")
        found.add(tag)
    return tuple(sorted(found))


def _known(alias: str | None) -> str | None:
    """``alias`` resolved, or None when it is no longer in ``CACHES`` (settings changed)."""
    try:
        return resolve_alias(alias)
    except ImproperlyConfigured:
        return None


def _aliases(cache: str | None) -> list[str]:
    if cache is not None:
        return [resolve_alias(cache)]
    with _guard:
        given = list(_tagged)
    return sorted({known for alias in [None, *given] if (known := _known(alias)) is not None})


def _functions(alias: str) -> set[str]:
    with _guard:
        noted = [(given, set(functions)) for given, functions in _tagged.items()]
    return {f for given, functions in noted if _known(given) == alias for f in functions}


def _keys(backend: Backend, tags: tuple[str, ...]) -> list[ServerKey]:
    functions: set[str] = set()
    if backend.tags_per_function:  # each function that may carry them: ours and the noted
        functions = _functions(backend.alias)
        functions |= set(backend.read_names(backend.registry_key("functions")))
    return backend.tag_keys(tags, functions)


def _bump(backend: Backend, tags: tuple[str, ...]) -> None:
    keys = _keys(backend, tags)
    try:
        backend.bump_tags(keys)
    finally:
        drop_voided_by(backend, keys)
    for tag in tags:
        stats.tag_invalidated(backend.alias, tag)


def _again(backend: Backend, tags: tuple[str, ...]) -> None:
    try:
        _bump(backend, tags)
    except BackendUnavailable as exc:
        logger.warning("could not invalidate tags %s again at COMMIT: %s", ", ".join(tags), exc)


def invalidate_tags(*tags: str, cache: str | None = None) -> None:
    """Invalidate every entry carrying any of ``tags``, in O(1) per tag: in the alias
    ``cache``, or (None) in every alias whose functions this process knows to carry tags, and
    the default one. Inside a transaction it is done again when the transaction commits (a
    reader may store what it read before meanwhile).

    >>> invalidate_tags("product:7", "catalogue")
    """
    names = entry_tags(tags, "invalidate_tags()")
    if recording.active:
        recording.invalidation("tags", ", ".join(names))
    for alias in _aliases(cache):
        backend = get_backend(alias)
        transactions.repeat_at_commit(functools.partial(_again, backend, names))
        _bump(backend, names)


async def ainvalidate_tags(*tags: str, cache: str | None = None) -> None:
    """:func:`invalidate_tags` for async code.

    >>> await ainvalidate_tags("product:7")
    """
    names = entry_tags(tags, "ainvalidate_tags()")
    for alias in _aliases(cache):
        backend = get_backend(alias)
        if backend.tags_per_function:
            keys = await sync_to_async(_keys, thread_sensitive=False)(backend, names)
        else:
            keys = backend.tag_keys(names)
        try:
            await backend.asynchronous().bump_tags(keys)
        finally:
            drop_voided_by(backend, keys)
        for tag in names:
            stats.tag_invalidated(alias, tag)
