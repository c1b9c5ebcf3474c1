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
``Cookie`` when the view read the session (``request.user`` included), read a cookie, or
embedded an existing CSRF token, and the active language and time zone are part of every key,
as in Django's ``cache_page``. So are request headers the page read that its ``Vary`` does not
name: the response varies on them (and says so). Flash messages are :mod:`cache_tools.views`'
concern.
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
from .request_state import AUTHENTICATION_KEYS, Reads, header_name

__all__ = [
    "Frozen",
    "bypasses",
    "freeze",
    "freshness",
    "request_parts",
    "request_values",
    "storable",
    "thaw",
    "varied_headers",
]

# Request headers a page may read without varying on them: those the key's host and scheme are
# made of (``request.get_host()``, ``request.scheme``), ``Authorization`` (a request with it is
# never served from the cache: :func:`bypasses`), and the conditional ones (a stored 200 is a
# valid answer to any conditional request, RFC 9111 §4.3.2; a 304 is never stored).
_NEED_NO_VARY = frozenset(
    {
        "host",
        "authorization",
        "x-forwarded-host",
        "x-forwarded-port",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
    }
)

# A header field name (RFC 9110 §5.1: a token), lower case. A name read that is not one (a
# ``request.headers.get("a:b")``) is absent from every request: nothing to vary on.
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")

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
    response: HttpResponseBase,
    request: HttpRequest,
    user_in_key: bool,
    reads: Reads,
    session_read_before: bool = False,
    headers_in_key: tuple[str, ...] = (),
) -> tuple[str, ...] | None:
    """What the response varies on (sorted): the request headers its ``Vary`` names (lower
    case), and the request state the page read that middleware would only account for after
    this decorator has run (see :mod:`cache_tools.request_state`): the headers it read
    (``headers_in_key``, ``vary_on_headers``, and the host's and scheme's left out),
    ``client:<key>`` for the client's address or server-authenticated user (``REMOTE_ADDR``,
    ``REMOTE_USER``), ``cookie:<name>`` for a cookie, ``session:<key>`` for a session key
    (``session:*``: the whole session), ``cookie`` (the whole header) for an embedded CSRF
    token or a session read before the view (by middleware: what it read is unknown). With
    ``user_in_key`` (``vary_on_user``), the session keys read for authentication are covered
    by the user's key. None for ``Vary: *``, or when the page read every header (iterated
    them).

    The response's own ``Vary`` gains the headers read and ``Cookie`` for cookies and the
    session, for caches downstream (no ``Vary`` can name the client keys).
    """
    names = {n.strip().lower() for n in _LIST.split(response.get("Vary", "")) if n.strip()}
    if "*" in names or "*" in reads.headers:
        return None
    read = {h for h in reads.headers if _FIELD_NAME.match(h)} - _NEED_NO_VARY
    read -= {*headers_in_key, *names}
    if settings.SECURE_PROXY_SSL_HEADER:
        read.discard(header_name(settings.SECURE_PROXY_SSL_HEADER[0]))
    if read:  # as HTTP spells them: Accept-Language
        patch_vary_headers(
            response, ["-".join(map(str.capitalize, h.split("-"))) for h in sorted(read)]
        )
    client = {f"client:{key}" for key in reads.client}  # no Vary can name these
    state = set()
    if "*" in reads.cookies:
        state.add("cookie")
    else:
        state |= {f"cookie:{name}" for name in reads.cookies}
    if session_read_before or request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
        state.add("cookie")
    elif reads.session_keys is None:
        state.add("session:*")
    else:
        covered = AUTHENTICATION_KEYS if user_in_key else frozenset()
        state |= {f"session:{key}" for key in reads.session_keys - covered}
    if state:
        patch_vary_headers(response, ("Cookie",))
    return tuple(sorted(names | read | client | state))


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


_ABSENT = "a"


def request_values(request: HttpRequest, names: tuple[str, ...]) -> list[str]:
    """The request's values of what a response varies on (see :func:`varied_headers`): its
    headers (an absent one differs from an empty one), client keys, cookies and session keys.
    Raises ``TypeError`` for a session value that cannot be part of a key."""
    values = []
    for name in names:
        kind, _, key = name.partition(":")
        if not key:  # a header: header names have no ":"
            values.append(normalise(request.headers.get(name), name))
        elif kind == "cookie":
            values.append(normalise(request.COOKIES.get(key), name))
        elif kind == "client":
            values.append(normalise(request.META.get(key), name))
        else:
            values.append(_session_value(request, key))
    return values


def _session_value(request: HttpRequest, key: str) -> str:
    session = getattr(request, "session", None)
    if session is None:
        return _ABSENT
    if key == "*":
        return normalise(dict(session.items()), "session")
    if key not in session:
        return _ABSENT
    return "p" + normalise(session[key], f"session:{key}")
