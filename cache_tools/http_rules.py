"""When a response may be stored, and for which requests it may be served (RFC 9111, shared cache).

A response is stored only if all of these hold:

* the request's method is one the view caches (GET and HEAD by default) and the request carries
  no ``Authorization`` header (RFC 9111 §3.5: a shared cache does not reuse such responses);
* status 200, not streaming;
* no ``Set-Cookie`` header, however it was set (``set_cookie()`` or ``response["Set-Cookie"]``);
* ``Cache-Control`` has none of ``private``, ``no-store``, ``no-cache``, and its freshness
  lifetime (``s-maxage``, else ``max-age``, else ``Expires``) is not zero or past;
* ``Vary`` does not contain ``*``;
* rendering did not create a new CSRF cookie (the page embeds a token for a cookie the
  response is about to set).

A stored response is served only to requests that agree on every header its ``Vary`` names.
Headers that middleware adds to ``Vary`` after the view returns are taken into account here:
``Cookie`` when the view read the session (``request.user`` included) or embedded an existing
CSRF token, and the active language and time zone are part of every key, as in Django's
``cache_page``.
"""

from __future__ import annotations

import re
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_http_date_safe
from django.utils.timezone import get_current_timezone_name
from django.utils.translation import get_language

from .keys import normalise

__all__ = [
    "Frozen",
    "bypasses",
    "freeze",
    "freshness",
    "header_values",
    "request_parts",
    "storable",
    "thaw",
    "varied_headers",
]

# Commas between header list elements (RFC 9110 §5.6.1), with optional whitespace.
_LIST = re.compile(r"\s*,\s*")

# A frozen response: (status, [(header, value), ...], body, the headers it varies on).
Frozen = tuple[int, list[tuple[str, str]], bytes, tuple[str, ...]]


def bypasses(request: HttpRequest, methods: frozenset[str]) -> bool:
    """True when the cache is neither read nor written for this request."""
    return request.method not in methods or "authorization" in request.headers


def _cache_control(response: HttpResponseBase) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for part in _LIST.split(response.get("Cache-Control", "")):
        name, _, value = part.partition("=")
        if name.strip():
            directives[name.strip().lower()] = value.strip().strip('"') or None
    return directives


def freshness(response: HttpResponseBase) -> float | None:
    """The response's own freshness lifetime in seconds for a shared cache, None if it sets
    none (``s-maxage`` wins over ``max-age``, which wins over ``Expires``)."""
    directives = _cache_control(response)
    for name in ("s-maxage", "max-age"):
        if name in directives:
            try:
                return max(0.0, float(directives[name] or 0))
            except ValueError:
                return 0.0  # malformed: treat as stale (RFC 9111 §4.2.1)
    if response.has_header("Expires"):
        expires = parse_http_date_safe(response["Expires"])
        return 0.0 if expires is None else max(0.0, expires - time.time())
    return None


def varied_headers(
    response: HttpResponseBase, request: HttpRequest, user_in_key: bool
) -> tuple[str, ...] | None:
    """The request headers (lower case, sorted) the response varies on; None for ``Vary: *``.

    ``Cookie`` is added, and to the response's own ``Vary`` too, when the view read the session
    or embedded an existing CSRF token: middleware would add it after this decorator has run.
    With ``user_in_key`` (``vary_on_user``) the session read is covered by the user's key.
    """
    names = {n.strip().lower() for n in _LIST.split(response.get("Vary", "")) if n.strip()}
    if "*" in names:
        return None
    session = getattr(request, "session", None)
    session_read = session is not None and getattr(session, "accessed", False) and not user_in_key
    if session_read or request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
        names.add("cookie")
        patch_vary_headers(response, ("Cookie",))
    return tuple(sorted(names))


def storable(response: HttpResponseBase, had_csrf_cookie: bool, request: HttpRequest) -> bool:
    """Whether the response may be stored in a shared cache (see the module's rules)."""
    if response.status_code != 200 or response.streaming:
        return False
    if response.cookies or response.has_header("Set-Cookie"):
        return False
    directives = _cache_control(response)
    if directives.keys() & {"private", "no-store", "no-cache"}:
        return False
    if freshness(response) == 0:
        return False
    return not (request.META.get("CSRF_COOKIE_NEEDS_UPDATE") and not had_csrf_cookie)


def request_parts(request: HttpRequest) -> list[str]:
    """What every page key holds: method, scheme, host, path, sorted query, and the active
    language and time zone (as Django's ``cache_page`` keys do)."""
    parts = [
        normalise(request, "request"),
        normalise(request.scheme, "scheme"),
        normalise(request.get_host(), "host"),
    ]
    if settings.USE_I18N:
        parts.append(normalise(get_language(), "language"))
    if settings.USE_TZ:
        parts.append(normalise(get_current_timezone_name(), "time zone"))
    return parts


def freeze(response: HttpResponse, varies_on: tuple[str, ...]) -> Frozen:
    return (response.status_code, list(response.items()), response.content, varies_on)


def thaw(frozen: Frozen) -> HttpResponse:
    status, headers, content, _ = frozen
    response = HttpResponse(content, status=status)
    for name, value in headers:
        response[name] = value
    return response


def header_values(request: HttpRequest, names: tuple[str, ...]) -> list[str]:
    """The request's values of ``names``; an absent header differs from an empty one."""
    return [normalise(request.headers.get(name), name) for name in names]
