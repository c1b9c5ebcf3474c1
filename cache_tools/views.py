"""``cache_view``: Django's ``cache_page`` with single flight, stale-while-revalidate, and the
HTTP rules of a shared cache.

.. code-block:: python

    from cache_tools import cache_view

    @cache_view(timeout=60, stale=30)
    def report(request): ...

    report.invalidate("/report/")   # every cached response of that path
    report.cache_info()             # CacheInfo(hits=..., misses=..., ...) across every process

What is stored and for whom is decided by :mod:`cache_tools.http_rules`: only 200 responses
without cookies or ``private``/``no-store``/``no-cache``, and each served only to requests that
agree on every header the response's ``Vary`` names. The headers a path varies on are learned
from its responses: the entry of a request whose key lacks them holds a pointer to them, which
every process follows (and remembers, as a hint the server's entries confirm). Every response
through the cache gets ``X-Cache: hit``, ``miss`` or ``stale``.
"""

from __future__ import annotations

import functools
import inspect
import re
import weakref
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, overload
from urllib.parse import quote, urlsplit

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from . import checks, request_state, signals
from ._options import (
    applied_bare,
    decorated_function,
    local_copies,
    positive_seconds,
    seconds_or_zero,
)
from .backends.base import MISS
from .dependencies import Dependencies, DependsOn
from .drive import Steps, adrive, ask, drive
from .flight import NOT_STORED, UNCACHED, AlsoStore, Flight
from .http_rules import (
    bypasses,
    freeze,
    freshness,
    request_parts,
    request_values,
    storable,
    thaw,
    varied_headers,
)
from .keys import KeyMaker, function_id, make_key, normalise, safe_key
from .stats import CacheInfo
from .tags import entry_tags, note_tagged

__all__ = ["AsyncCachedView", "CachedView", "cache_view", "cached_views"]

P = ParamSpec("P")
View = Callable[Concatenate[HttpRequest, P], HttpResponseBase]
AsyncView = Callable[Concatenate[HttpRequest, P], Coroutine[Any, Any, HttpResponseBase]]

#: Length budget of the request part of an entry key.
REQUEST_KEY_LENGTH = 120
#: Paths whose learned ``Vary`` headers a process remembers per view.
LEARNED_PATHS = 1024
_MAX_HOPS = 3

# What an entry holds: a frozen response (and whether the page shows flash messages), a pointer
# to the headers the path varies on, or a marker for a response that must not be stored (so
# later requests skip single flight).
_RESPONSE, _VARIES, _UNCACHEABLE = "r", "v", "u"
# A header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
#: ``X-Cache`` of a response that went past the cache (neither served from it nor stored).
BYPASS = "bypass"

_all_cached_views: weakref.WeakSet[CachedView[...]] = weakref.WeakSet()


def cached_views() -> list[CachedView[...]]:
    """Every ``cache_view`` view defined in this process, by dotted path (for dashboards)."""
    return sorted(_all_cached_views, key=lambda v: v.flight.function_id)


def _scope(path: str) -> str:
    """The part of a view's keys with a generation of its own: the path."""
    return safe_key(quote(path, safe="/"), 100)


class CachedView(Generic[P]):
    """What :func:`cache_view` returns: the view (same parameters), plus ``invalidate`` and
    ``cache_info``."""

    def __init__(
        self,
        view: View[P],
        flight: Flight[HttpResponseBase],
        *,
        methods: frozenset[str],
        vary_on_user: bool,
        vary_on_headers: tuple[str, ...],
        key_maker: KeyMaker,
        tags: Callable[..., Iterable[str]] | None = None,
        dependencies: Dependencies | None = None,
    ) -> None:
        functools.update_wrapper(self, view)
        self.flight = flight
        #: ``depends_on``, kept here (the registry of dependencies holds it weakly).
        self.dependencies = dependencies
        self._tags = tags
        self._fixed_tags = () if dependencies is None else dependencies.tags
        self._methods = methods
        self._vary_on_user = vary_on_user
        self._vary_on_headers = vary_on_headers
        self._key_maker = key_maker
        self._learned: dict[str, tuple[str, ...]] = {}
        _all_cached_views.add(self)
        signals.name_sender(self.flight.function_id, self)

    def __repr__(self) -> str:
        return f"<cached view {self.flight.function_id}>"

    def _view(self) -> View[P]:
        return self.__wrapped__  # type: ignore[no-any-return, attr-defined]

    def entry_tags(
        self, request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, ...]:
        """The tags this request's entry carries: ``tags(request, *args, **kwargs)`` and those
        of ``depends_on``."""
        if self._tags is None:
            return self._fixed_tags
        source = f"tags() of {self.flight.function_id}"
        found = entry_tags(self._tags(request, *args, **kwargs), source)
        return tuple(sorted({*found, *self._fixed_tags})) if self._fixed_tags else found

    def _key(
        self,
        request: HttpRequest,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        varies: tuple[str, ...],
    ) -> str:
        if self._key_maker is not None:
            parts = [make_key(self._view(), (request, *args), kwargs, self._key_maker)]
        else:
            parts = request_parts(request)
        if self._vary_on_user:
            user = getattr(request, "user", None)
            pk = user.pk if user is not None and user.is_authenticated else None
            parts.append(normalise(pk, "user"))
        parts += request_values(request, self._vary_on_headers)
        parts.append(normalise(varies, "vary"))
        parts += request_values(request, varies)
        return safe_key(":".join(parts), REQUEST_KEY_LENGTH)

    def _learn(self, path: str, varies: tuple[str, ...]) -> None:
        if len(self._learned) >= LEARNED_PATHS:
            self._learned.pop(next(iter(self._learned)), None)
        self._learned[path] = varies

    def __call__(self, request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        return drive(self._serve(request, args, kwargs), _Page(self, request, args, kwargs))

    def _serve(
        self, request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Steps[HttpResponseBase]:
        """The steps from a request to its response, for sync and async views alike."""
        if bypasses(request, self._methods):
            return (yield from _bypass())
        session = getattr(request, "session", None)
        read_before = session is not None and getattr(session, "accessed", False)
        scope = _scope(request.path)
        varies = self._learned.get(request.path, ())
        for _ in range(_MAX_HOPS):
            try:
                key = self._key(request, args, kwargs, varies)
            except TypeError:  # a session value that cannot be part of a key
                return (yield from _bypass())
            state, value = yield from ask(_Page.get, key, varies, scope, read_before)
            if state in (MISS, UNCACHED):
                return value  # type: ignore[no-any-return]
            kind = value[0]
            if kind == _UNCACHEABLE:
                return (yield from _bypass())
            stored_varies = value[1] if kind == _VARIES else value[1][3]
            if kind == _RESPONSE and set(stored_varies) <= set(varies):
                if value[2] and request_state.pending_messages(request):
                    # The page shows flash messages and this visitor has some: theirs alone.
                    return (yield from _bypass())
                response = thaw(value[1])
                response["X-Cache"] = state
                return response
            varies = stored_varies  # the path varies on more headers than this key holds
            self._learn(request.path, varies)
        return (yield from _bypass())  # its Vary keeps changing: serve it uncached

    def _compute(
        self,
        request: HttpRequest,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        keyed_on: tuple[str, ...],
        scope: str,
        session_read_before: bool,
    ) -> Steps[tuple[HttpResponseBase, Any]]:
        """The steps of rendering the page once, deciding what to store, and where
        (``session_read_before``: middleware read the session before this view's cache)."""
        had_csrf_cookie = "CSRF_COOKIE" in request.META
        watching = request_state.watch(request)
        try:
            response = yield from ask(_Page.view)
            render = getattr(response, "render", None)
            if callable(render) and not getattr(response, "is_rendered", True):
                response = render()
        finally:
            reads = watching.stop()
        if reads.messages_shown:  # this visitor's own flash messages: not for the next one
            response["X-Cache"] = BYPASS
            return response, NOT_STORED
        varies = varied_headers(
            response, request, self._vary_on_user, reads, session_read_before, self._vary_on_headers
        )
        if (
            varies is None
            or not isinstance(response, HttpResponse)  # streamed
            or not storable(response, had_csrf_cookie, request)
        ):
            response["X-Cache"] = BYPASS
            return response, (_UNCACHEABLE,)
        entry = (_RESPONSE, freeze(response, varies), reads.messages_read)
        if not set(varies) <= set(keyed_on):
            # Store it where requests that agree on those headers look, and leave a pointer
            # there for the requests that come to this key.
            try:
                key = self._key(request, args, kwargs, varies)
            except TypeError:  # a session value that cannot be part of a key
                response["X-Cache"] = BYPASS
                return response, NOT_STORED
            self._learn(request.path, varies)
            response["X-Cache"] = "miss"
            return response, AlsoStore((_VARIES, varies), key, scope, entry)
        response["X-Cache"] = "miss"
        return response, entry

    def invalidate(self, request_or_path: HttpRequest | str) -> bool:
        """Drop every cached response of a path (any query, host, scheme or ``Vary`` variant);
        takes a request or a path (a full URL works too). True if something may have been
        cached there."""
        if isinstance(request_or_path, HttpRequest):
            path = request_or_path.path
        elif isinstance(request_or_path, str) and request_or_path:
            path = urlsplit(request_or_path).path or "/"
        else:
            raise TypeError(f"invalidate() takes a request or a path, not {request_or_path!r}")
        return self.flight.invalidate_scope(_scope(path)) > 0

    def cache_key(self, request: HttpRequest, *args: Any, **kwargs: Any) -> str:
        """The full cache key of the entry this request would be served from (with the
        ``Vary`` headers this process has learned for its path)."""
        varies = self._learned.get(request.path, ())
        key = self._key(request, args, kwargs, varies)
        return self.flight.keys(key, scope=_scope(request.path)).value

    def cache_info(self) -> CacheInfo:
        """Hits, misses, stale hits, computations and errors summed over every process."""
        return self.flight.info()

    def cache_clear_stats(self) -> None:
        """Reset the statistics to zero for every process."""
        self.flight.clear_stats()


class AsyncCachedView(CachedView[P]):
    """The same for an ``async def`` view: awaited by Django's async request path, with the
    same keys, rules and single flight (sync and async workers share entries)."""

    def __init__(self, view: Any, flight: Flight[HttpResponseBase], **options: Any) -> None:
        super().__init__(view, flight, **options)
        markcoroutinefunction(self)

    async def __call__(  # type: ignore[override]
        self, request: HttpRequest, *args: P.args, **kwargs: P.kwargs
    ) -> HttpResponseBase:
        page = _AsyncPage(self, request, args, kwargs)
        return await adrive(self._serve(request, args, kwargs), page)


def _bypass() -> Steps[HttpResponseBase]:
    """The view's own response, past the cache."""
    response = yield from ask(_Page.view)
    response["X-Cache"] = BYPASS
    return response


class _Page:
    """One request's view of the world, for the steps: the view, and the engine."""

    def __init__(
        self, cached: CachedView[Any], request: HttpRequest, args: Any, kwargs: Any
    ) -> None:
        self.cached, self.request, self.args, self.kwargs = cached, request, args, kwargs

    def view(self) -> HttpResponseBase:
        return self.cached._view()(self.request, *self.args, **self.kwargs)

    def get(
        self, key: str, keyed_on: tuple[str, ...], scope: str, read_before: bool
    ) -> tuple[str, Any]:
        steps = self.cached._compute(
            self.request, self.args, self.kwargs, keyed_on, scope, read_before
        )
        tags = self.cached.entry_tags(self.request, self.args, self.kwargs)
        return self.cached.flight.get(key, lambda: drive(steps, self), scope, tags)


class _AsyncPage(_Page):
    async def view(self) -> HttpResponseBase:  # type: ignore[override]
        return await self.cached._view()(self.request, *self.args, **self.kwargs)  # type: ignore[no-any-return, misc]

    async def get(  # type: ignore[override]
        self, key: str, keyed_on: tuple[str, ...], scope: str, read_before: bool
    ) -> tuple[str, Any]:
        steps = self.cached._compute(
            self.request, self.args, self.kwargs, keyed_on, scope, read_before
        )
        tags = self.cached.entry_tags(self.request, self.args, self.kwargs)
        return await self.cached.flight.aget(key, lambda: adrive(steps, self), scope, tags)


class CacheViewDecorator(Protocol):
    """What ``cache_view(...)`` returns: a decorator for sync and ``async def`` views."""

    @overload
    def __call__(self, view: AsyncView[P]) -> AsyncCachedView[P]: ...
    @overload
    def __call__(self, view: View[P]) -> CachedView[P]: ...


@overload
def cache_view(timeout: AsyncView[P], /) -> AsyncCachedView[P]: ...
@overload
def cache_view(timeout: View[P], /) -> CachedView[P]: ...
@overload
def cache_view(
    timeout: float | None = 60,
    *,
    stale: float = 0,
    vary_on_user: bool = False,
    vary_on_headers: Iterable[str] = (),
    methods: Iterable[str] = ("GET", "HEAD"),
    cache: str | None = None,
    key_maker: KeyMaker = None,
    local: bool | int = False,
    tags: Callable[..., Iterable[str]] | None = None,
    depends_on: DependsOn | None = None,
) -> CacheViewDecorator: ...


def cache_view(
    timeout: Any = 60,
    *,
    stale: float = 0,
    vary_on_user: bool = False,
    vary_on_headers: Iterable[str] = (),
    methods: Iterable[str] = ("GET", "HEAD"),
    cache: str | None = None,
    key_maker: KeyMaker = None,
    local: bool | int = False,
    tags: Callable[..., Iterable[str]] | None = None,
    depends_on: DependsOn | None = None,
) -> Any:
    """Cache a view's responses, computing each one once across all workers.

    The key is the method, scheme, host, path and sorted query string, the active language
    and time zone, plus the user's pk with ``vary_on_user`` and the named request headers, plus
    every header the response's ``Vary`` names (learned per path). ``key_maker`` (called with
    the view's arguments) replaces the first part; the rest still applies. A response is kept
    for ``timeout`` seconds or its own ``max-age``/``s-maxage``, whichever is shorter.
    ``local`` keeps copies in each process as ``cache_aside(local=...)`` does. ``tags(request,
    *args, **kwargs)`` and ``depends_on`` invalidate responses as for ``cache_aside``
    (:doc:`invalidation`).

    >>> @cache_view(timeout=60, stale=30, vary_on_headers=["Accept-Language"])
    ... def report(request):
    ...     return render(request, "report.html", build_report())
    """
    if applied_bare(timeout):
        return cache_view()(timeout)
    if timeout is not None:
        positive_seconds(timeout, "timeout")
    seconds_or_zero(stale, "stale")
    if isinstance(vary_on_headers, str) or isinstance(methods, str):
        raise ValueError("vary_on_headers and methods take a list of names, not one string")
    header_names = tuple(sorted({name.lower() for name in vary_on_headers}))
    for name in header_names:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"vary_on_headers: {name!r} is not a request header name")
    local_size = local_copies(local)
    if tags is not None and not callable(tags):
        raise TypeError(f"tags must be a callable returning the response's tags, not {tags!r}")
    allowed = frozenset(method.upper() for method in methods)
    most = None if timeout is None else float(timeout)

    def keep_for(response: HttpResponseBase) -> float | None:
        own = freshness(response)
        if own is None:
            return most
        return own if most is None else min(own, most)

    def decorate(view: Any) -> CachedView[Any]:
        view = decorated_function(view, "@cache_view")
        flight: Flight[HttpResponseBase] = Flight(
            function_id=function_id(view),
            alias=cache,
            timeout=keep_for,
            stale=float(stale),
            lock=True,
            lock_timeout=30.0,
            local=local_size,
            share_unstored=False,  # a response not stored may be its visitor's alone
        )
        user = f"@cache_view {view.__module__}.{view.__qualname__}"
        checks.record_use(cache, user, False, local=local_size is not None)
        kind = AsyncCachedView if inspect.iscoroutinefunction(view) else CachedView
        dependencies = None if depends_on is None else Dependencies(depends_on, cache)
        if tags is not None or dependencies is not None:
            note_tagged(cache, flight.function_id)
        return kind(
            view,
            flight,
            methods=allowed,
            vary_on_user=vary_on_user,
            vary_on_headers=header_names,
            key_maker=key_maker,
            tags=tags,
            dependencies=dependencies,
        )

    return decorate
