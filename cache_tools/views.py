"""``cache_view``: Django's ``cache_page`` with single flight and stale-while-revalidate.

.. code-block:: python

    from cache_tools import cache_view

    @cache_view(timeout=60, stale=30)
    def report(request): ...

Only successful (200) responses are stored, after rendering. Responses that set cookies, carry
``Cache-Control: private``/``no-store`` or ``Vary: *``, and requests whose method is not in
``methods``, bypass the cache. Every response through the cache gets ``X-Cache: hit``,
``miss`` or ``stale``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase

from . import checks
from ._options import applied_bare, positive_seconds, seconds_or_zero
from .aside import ARGUMENT_KEY_LENGTH, Flight
from .keys import KeyMaker, function_id, make_key, normalise, safe_key

__all__ = ["cache_view"]

# Stored in place of a response that must not be cached, so that later requests for the same
# key call the view directly instead of queueing behind each other in single flight.
_UNCACHEABLE = ("uncacheable",)


def _storable(response: HttpResponseBase) -> bool:
    if response.status_code != 200 or response.streaming or response.cookies:
        return False
    directives = {
        part.split("=", 1)[0].strip().lower()
        for part in response.get("Cache-Control", "").split(",")
    }
    if directives & {"private", "no-store"}:
        return False
    return response.get("Vary", "").strip() != "*"


def _freeze(response: HttpResponse) -> tuple[Any, ...]:
    return (response.status_code, list(response.items()), response.content)


def _thaw(frozen: tuple[Any, ...]) -> HttpResponse:
    status, headers, content = frozen
    response = HttpResponse(content, status=status)
    for name, value in headers:
        response[name] = value
    return response


def cache_view(
    timeout: float | Callable[..., Any] | None = 60,
    *,
    stale: float = 0,
    vary_on_user: bool = False,
    vary_on_headers: Iterable[str] = (),
    methods: Iterable[str] = ("GET", "HEAD"),
    cache: str | None = None,
    key_maker: KeyMaker = None,
) -> Any:
    """Cache a view's successful responses, computing each one once across all workers.

    The key is the method, host, path and sorted query string, plus the user's pk with
    ``vary_on_user`` and the named request headers; ``key_maker`` (with the view's signature)
    replaces it.

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
    header_names = [name.lower() for name in vary_on_headers]
    allowed = {method.upper() for method in methods}

    def decorate(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        flight: Flight[HttpResponseBase] = Flight(
            function_id=function_id(view),
            alias=cache,
            timeout=timeout,  # type: ignore[arg-type]
            stale=float(stale),
            lock=True,
            lock_timeout=30.0,
        )

        checks.record_use(cache, f"@cache_view {view.__module__}.{view.__qualname__}", False)

        def request_key(request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            if key_maker is not None:
                return make_key(
                    view, (request, *args), kwargs, key_maker, max_length=ARGUMENT_KEY_LENGTH
                )
            parts = [normalise(request, "request"), normalise(request.get_host(), "host")]
            if vary_on_user:
                user = getattr(request, "user", None)
                authenticated = user is not None and user.is_authenticated
                parts.append(normalise(user.pk if authenticated else None, "user"))
            for name in header_names:
                parts.append(normalise(request.headers.get(name), name))
            return safe_key(":".join(parts), ARGUMENT_KEY_LENGTH)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in allowed:
                return view(request, *args, **kwargs)

            def compute() -> tuple[HttpResponseBase, Any]:
                response = view(request, *args, **kwargs)
                render = getattr(response, "render", None)
                if callable(render) and not getattr(response, "is_rendered", True):
                    response = render()
                if not _storable(response):
                    return response, _UNCACHEABLE
                return response, _freeze(response)  # type: ignore[arg-type]

            state, value = flight.get(request_key(request, args, kwargs), compute)
            if value == _UNCACHEABLE:
                return view(request, *args, **kwargs)
            response = value if state == "miss" else _thaw(value)
            if state != "miss" or _storable(response):
                response["X-Cache"] = state
            return response

        wrapper.flight = flight  # type: ignore[attr-defined]
        return wrapper

    return decorate
